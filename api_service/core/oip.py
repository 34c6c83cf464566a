"""The Open Inference Protocol's operations on the gateway core, for every door that speaks it
(REST `api_service.routes.v2`, gRPC `api_service.grpc`). No transport here: a door parses its
tensors (`api_service.core.tensors`), calls `OpenInference`, and writes the answer and the
errors (`inferq.errors`; an `InvalidRequest` is the protocol's "bad request") its own way.

``OpenInference(gateway)``, one per door (it keeps the models' tensor mappings):

- ``server_metadata() -> dict``: ``{"name", "version", "extensions"}``;
  ``await server_ready() -> bool`` (the broker and Redis reachable; live is the process up).
- ``await model_metadata(model, version) -> ModelMetadata`` (``.to_json()``: name, versions,
  platform, inputs, outputs); ``await model_ready(model, version) -> bool``.
- ``await infer(InferRequest) -> InferResponse``: one task per row, submitted at once through
  `Gateway.predict` as binary protobuf, each waited for up to the request's ``timeout_s`` or
  ``INFERQ_MAX_WAIT_S`` (30 s), whichever is shorter; then `DeadlineExceeded` (504) naming the
  unfinished tasks (they still run: ``GET /tasks/{id}``). A ``timeout_s`` is also the tasks'
  deadline. A task that failed raises its error (an unknown type, a model's own exception:
  a 500 `InferqError` naming it).
- ``await submit(InferRequest) -> Submitted``: the asynchronous form (the extension
  ``async_infer``): the tasks accepted, not waited for; ``Submitted.tasks`` are their
  `TaskAnswer` (``view()``: ``task_id``, ``status``, ``location``).

Names: a door's ``model`` and ``version`` name inferq's reference ``model@version``
(``version`` a number or an alias; None: the newest, or the live class model). A class model
(``model_b``) has the one version its workers registered (``record.version``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

import inferq
from api_service.core.gateway import MAX_WAIT_S, Caller, Gateway, PredictRequest, TaskAnswer
from api_service.core.live_models import LiveModel
from api_service.core.references import catalog_call
from api_service.core.tensors import ModelTensors, Tensor, TensorInfo, class_tensors, onnx_tensors
from inferq.errors import DeadlineExceeded, InferqError, InvalidRequest, ModelNotFound
from inferq.tasks.state import TaskStatus

SERVER_NAME = "inferq"
#: What `server_metadata` advertises: Triton's binary tensor data extension (REST), and
#: inferq's asynchronous infer (REST: ``Prefer: respond-async`` answers 202 + task locations).
EXTENSIONS = ("binary_tensor_data", "async_infer")
PROTOBUF = "application/x-protobuf"


@dataclass(slots=True)  # not frozen: its __init__ runs per request
class InferRequest:
    """An infer request, as a door parsed it."""

    model: str
    version: str | None
    inputs: Sequence[Tensor]
    #: The outputs to return, in order; None: all of them.
    outputs: Sequence[str] | None = None
    id: str = ""  # the client's request id, echoed
    #: Bounds the wait (and is the tasks' deadline); None: INFERQ_MAX_WAIT_S.
    timeout_s: float | None = None
    trace_context: Mapping[str, str] = field(default_factory=dict)
    caller: Caller | None = None


@dataclass(slots=True)  # not frozen: its __init__ runs per request
class InferResponse:
    model_name: str
    model_version: str
    id: str
    outputs: list[Tensor]


@dataclass(frozen=True)
class Submitted:
    """The asynchronous form's answer: the accepted tasks, one per row."""

    model_name: str
    model_version: str
    id: str
    tasks: list[TaskAnswer]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": self.versions,
            "platform": self.platform,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }


@dataclass(slots=True)  # not frozen: its __init__ runs per request
class _Served:
    """A model as the protocol names it, resolved: its served name and version."""

    name: str  # the protocol's model name
    served: str  # inferq's: ``digits@3``, ``model_b``
    version: str
    catalog: bool  # a catalog version (generic ONNX), or a class model
    #: The live entry read on the way (a class model's), so an infer need not read it again.
    entry: LiveModel | None = None


class OpenInference:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        # A catalog version's signature never changes; a class model's messages are keyed
        # by their descriptors, so a redeployed model with new messages is mapped again.
        self._signatures: dict[str, ModelTensors] = {}
        self._bound: dict[tuple[str, bytes], ModelTensors] = {}

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": inferq.__version__, "extensions": EXTENSIONS}

    async def server_ready(self) -> bool:
        return all((await self.gateway.readiness()).values())

    async def model_metadata(self, model: str, version: str | None = None) -> ModelMetadata:
        served = await self._resolve(model, version)
        if served.catalog:
            tensors = await self._signature_tensors(served.served)
            listed = await catalog_call(self.gateway.catalog.list_versions, served.name)
            versions = [str(v.number) for v in listed]
        else:
            entry = await self.gateway.live_models.require_live(served.served)
            tensors = class_tensors(entry.request_class, entry.response_class)
            versions = [served.version]
        return ModelMetadata(
            served.name, versions, tensors.platform, tensors.inputs, tensors.outputs
        )

    async def model_ready(self, model: str, version: str | None = None) -> bool:
        """Whether a worker serves it now; `ModelNotFound` for a model that does not exist."""
        served = await self._resolve(model, version)
        entry = await self.gateway.live_models.get(served.served)
        return entry is not None and bool(entry.workers)

    async def infer(self, request: InferRequest) -> InferResponse:
        wait_s = min(self.gateway.settings.max_wait_s, MAX_WAIT_S)
        if request.timeout_s is not None:
            wait_s = min(wait_s, request.timeout_s)
        served, tensors, answers = await self._predict(request, wait_s)
        pending = [a for a in answers if not a.finished]
        if pending:
            locations = ", ".join(f"/tasks/{a.task_id}" for a in pending)
            raise DeadlineExceeded(
                f"{len(pending)} of {len(answers)} task(s) not finished within {wait_s:g} s; "
                f"they still run: {locations}",
                tasks=[a.task_id for a in pending],
            )
        responses = [_response(answer) for answer in answers]
        return InferResponse(
            served.name,
            served.version,
            request.id,
            tensors.outputs_of(responses, request.outputs),
        )

    async def submit(self, request: InferRequest) -> Submitted:
        served, _, answers = await self._predict(request, 0.0)
        return Submitted(served.name, served.version, request.id, answers)

    # --- the steps ----------------------------------------------------------------------

    async def _predict(
        self, request: InferRequest, wait_s: float
    ) -> tuple[_Served, ModelTensors, list[TaskAnswer]]:
        served = await self._resolve(request.model, request.version)
        entry = served.entry
        if entry is None or not entry.workers:  # the error saying why, or a fresh read
            entry = await self.gateway.live_models.require_live(served.served)
        tensors = self._bound.get((served.served, entry.record.descriptor_set))
        if tensors is None:
            tensors = await self._tensors(served, entry)
        bodies = tensors.request_bodies(request.inputs)
        if request.outputs is not None:  # checked before any task is submitted
            unknown = set(request.outputs) - {t.name for t in tensors.outputs}
            if unknown:
                raise InvalidRequest(
                    f"unknown output(s) {', '.join(sorted(unknown))}; the model gives "
                    f"{', '.join(t.name for t in tensors.outputs)}"
                )
        deadline_s = None
        if request.timeout_s is not None:
            if not (0 < request.timeout_s and math.isfinite(request.timeout_s)):
                raise InvalidRequest(f"timeout must be > 0, not {request.timeout_s:g}")
            deadline_s = request.timeout_s
        calls = [
            self.gateway.predict(
                PredictRequest(
                    model=served.served,
                    body=body,
                    content_type=PROTOBUF,
                    wait_s=wait_s,
                    deadline_s=deadline_s,
                    trace_context=request.trace_context,
                    caller=request.caller,
                )
            )
            for body in bodies
        ]
        if len(calls) == 1:
            return served, tensors, [await calls[0]]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return served, tensors, [r for r in results if isinstance(r, TaskAnswer)]

    async def _resolve(self, model: str, version: str | None) -> _Served:
        gateway = self.gateway
        if version is not None and "@" not in model:
            # A class model has the one version its workers registered; another version
            # number is looked for in the catalog.
            entry = await gateway.live_models.get(model)
            if entry is not None and "@" not in entry.record.name:
                if entry.record.version == version:
                    return _Served(model, model, version, catalog=False, entry=entry)
        ref = model if version is None else f"{model}@{version}"
        _, _, tail = ref.rpartition("@")
        if tail.isdigit() and (not tail.isascii() or int(tail) >= 2**63):
            # Digits the catalog cannot take as a version number ("²", past int64).
            raise ModelNotFound(f"no model {ref!r}", model=model)
        served = await gateway.references.served_name(ref)
        name, at, number = served.partition("@")
        if at:
            return _Served(name, served, number, catalog=True)
        entry = await gateway.live_models.get(served)
        live_version = entry.record.version if entry else ""
        return _Served(name, served, live_version, catalog=False, entry=entry)

    async def _signature_tensors(self, served: str) -> ModelTensors:
        tensors = self._signatures.get(served)
        if tensors is None:
            version = await self.gateway.references.version(served)
            tensors = self._signatures[served] = onnx_tensors(version.signature)
        return tensors

    async def _tensors(self, served: _Served, entry: LiveModel) -> ModelTensors:
        """The live model's mapping, bound to its messages."""
        key = (served.served, entry.record.descriptor_set)
        tensors = self._bound.get(key)
        if tensors is None:
            if served.catalog:
                unbound = await self._signature_tensors(served.served)
                tensors = unbound.bind(entry.request_class, entry.response_class)
            else:
                tensors = class_tensors(entry.request_class, entry.response_class)
            self._bound[key] = tensors
        return tensors


def _response(answer: TaskAnswer) -> Message:
    """The task's response message, or the error it ended with."""
    state = answer.state
    assert state is not None and answer.response_class is not None
    if state.status is TaskStatus.SUCCEEDED and state.result is not None:
        return answer.response_class.FromString(state.result)
    raise task_error(answer)


#: A model's own exceptions that, by Python's convention, say its input is wrong: 400.
INPUT_ERRORS = frozenset({"ValueError", "TypeError", "KeyError", "IndexError"})


def task_error(answer: TaskAnswer) -> InferqError:
    """The error a task ended with, as its class in `inferq.errors`; a model's own
    exception: `InvalidRequest` for those of `INPUT_ERRORS`, else a plain `InferqError`
    (500)."""
    state = answer.state
    assert state is not None
    expired = state.status is TaskStatus.EXPIRED
    error_type = state.error_type or (DeadlineExceeded.error_type if expired else "")
    message = state.error_message or f"task ended {state.status.value}"
    text = f"task {answer.task_id} ({error_type or state.status.value}): {message}"
    for cls in _error_classes(InferqError):
        if cls.error_type == error_type:
            try:
                return cls(text, task_id=answer.task_id)
            except TypeError:  # one that takes more (a retry time): the plain error
                break
    if error_type in INPUT_ERRORS:
        return InvalidRequest(text, task_id=answer.task_id)
    return InferqError(text, task_id=answer.task_id)


def _error_classes(base: type[InferqError]) -> list[type[InferqError]]:
    found = []
    for cls in base.__subclasses__():
        found.append(cls)
        found.extend(_error_classes(cls))
    return found
