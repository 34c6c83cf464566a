"""The gateway's view of the registry: which models exist, whether they are live, and their
message classes (built from the descriptors workers registered, never from imported code).
Lookups are cached briefly, so the hot path rarely touches Redis for them."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from google.protobuf.message import Message

from inferq.errors import ModelNotFound, ModelUnavailable
from inferq.settings import SERVED_NAME_PATTERN
from model_registry.descriptors import load_message_types
from model_registry.record import ModelRecord, WorkerHeartbeat
from model_registry.registry import Registry

_VALID_NAME = re.compile(SERVED_NAME_PATTERN)


@dataclass(frozen=True)
class LiveModel:
    record: ModelRecord
    request_class: type[Message]
    response_class: type[Message]
    workers: list[WorkerHeartbeat]


class LiveModels:
    def __init__(self, registry: Registry, cache_s: float, retry_after_s: float) -> None:
        self._registry = registry
        self._cache_s = cache_s
        self._retry_after_s = retry_after_s
        self._cache: dict[str, tuple[float, LiveModel]] = {}

    async def get(self, model: str, fresh: bool = False) -> LiveModel | None:
        """The model's entry, or None if no worker ever registered it. ``fresh`` reads the
        registry now, for what shows a model's workers (a worker that left a moment ago is
        gone there, though the hot path may still find it in the cache)."""
        if not _VALID_NAME.match(model):
            return None
        cached = self._cache.get(model)
        if cached and cached[0] > time.monotonic() and not fresh:
            return cached[1]
        entry = await self._load(model)
        if entry is not None:  # unknown names are not kept: any client can invent endless ones
            self._cache[model] = (time.monotonic() + self._cache_s, entry)
        return entry

    async def require_live(self, model: str) -> LiveModel:
        entry = await self.get(model)
        if entry is None and "@" in model:  # a catalog version (`References` found it)
            raise ModelUnavailable(
                f"version {model} has no live worker: deploy it (`inferq models deploy {model}`) "
                f"or start one (`inferq worker onnx:{model}`)",
                retry_after_s=self._retry_after_s,
                model=model,
            )
        if entry is None:
            raise ModelNotFound(f"no model named {model!r}; GET /models lists them", model=model)
        if not entry.workers and not entry.record.scale_to_zero:
            raise ModelUnavailable(
                f"model {model!r} has no live worker; start one with `inferq worker`",
                retry_after_s=self._retry_after_s,
                model=model,
            )
        return entry

    async def all(self, fresh: bool = False) -> list[LiveModel]:
        names = await self._registry.model_names()
        entries = [await self.get(name, fresh) for name in names]
        return [entry for entry in entries if entry is not None]

    async def _load(self, model: str) -> LiveModel | None:
        record = await self._registry.get(model)
        if record is None:
            return None
        types = load_message_types(record.descriptor_set)
        return LiveModel(
            record=record,
            request_class=types.message_class(record.request_type),
            response_class=types.message_class(record.response_type),
            workers=await self._registry.live_workers(model),
        )
