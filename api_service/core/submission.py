"""Submitting a task: admit it under its API key's limits (`api_service.core.limits`),
publish it with a confirm, then record it as queued (both through the `PublishBatcher`; a
request that waits for the result may leave the record for later), and honour
Idempotency-Key (per key), so a client that retries a POST gets the task it already created."""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from redis.asyncio import Redis

from api_service.core.batcher import PublishBatcher
from api_service.core.broker import TaskPublisher
from api_service.core.callers import Caller
from api_service.core.limits import KeyLimiter
from api_service.core.live_models import LiveModel
from api_service.metrics import record_key_request
from inferq.errors import InferqError, InvalidRequest, QueueFull, RateLimited
from inferq.names import Names
from inferq.tasks.state import new_task_id, now_ms
from inferq.tasks.store import TaskStore
from proto.task_pb2 import TaskEnvelope

MAX_IDEMPOTENCY_KEY = 255
RETRY_AFTER_BOUNDS_S = (1, 60)


@dataclass(frozen=True)
class Submitted:
    task_id: str
    created: bool  # False when an Idempotency-Key matched an earlier task
    #: The new task, when its queued record was left to the caller (``record=False``).
    unrecorded: TaskEnvelope | None = None


class TaskSubmitter:
    def __init__(
        self,
        redis: Redis,
        names: Names,
        store: TaskStore,
        publisher: TaskPublisher,
        batcher: PublishBatcher,
        ttl_s: int,
        limiter: KeyLimiter,
    ) -> None:
        self._redis = redis
        self._limiter = limiter
        self._names = names
        self._store = store
        self._publisher = publisher
        self._batcher = batcher
        self._ttl_s = ttl_s

    async def submit(
        self,
        entry: LiveModel,
        message: Message,
        deadline_s: float,
        idempotency_key: str | None = None,
        trace_context: dict[str, str] | None = None,
        task_id: str | None = None,
        record: bool = True,
        finished: asyncio.Future[Any] | None = None,
        caller: Caller | None = None,
    ) -> Submitted:
        """Publishes and records a new task (its id ``task_id``, or a new one).
        ``record``: whether its record is written at the confirm (`api_service.core.records`);
        if not, the caller writes it if needed (`Submitted.unrecorded`). ``finished``: see
        `PublishBatcher.submit`. ``caller``: the API key sending it (None: anonymous), whose
        limits it must fit (else `RateLimited`) and who owns the task."""
        model = entry.record.name
        request = message.SerializeToString(deterministic=True)
        task_id = task_id or new_task_id()
        if idempotency_key is not None:
            # Per key: another key's Idempotency-Key never names this one's task.
            idempotency_key = f"{caller.key_id}/{idempotency_key}" if caller else idempotency_key
            earlier = await self._claim(idempotency_key, model, request, task_id)
            if earlier is not None:
                return Submitted(earlier, created=False)
        created_at_ms = now_ms()
        ttl_ms = max(1, int(1000 * deadline_s))
        envelope = TaskEnvelope(
            task_id=task_id,
            model=model,
            request=request,
            created_at_ms=created_at_ms,
            deadline_ms=created_at_ms + ttl_ms,
            trace_context=trace_context or {},
        )
        if caller is not None:
            envelope.caller_key_id = caller.key_id
            envelope.caller_name = caller.name
            envelope.in_flight_limited = caller.limits.max_in_flight is not None
            try:
                await self._limiter.admit(caller, task_id, envelope.deadline_ms)
            except InferqError as error:
                if isinstance(error, RateLimited):
                    record_key_request(caller.name, f"{error.details['limit']}_limited")
                if idempotency_key is not None:  # a retry with the same key tries again
                    await self._redis.delete(self._names.idempotency(model, idempotency_key))
                raise
            record_key_request(caller.name, "admitted")
        unrecorded = None if record else envelope
        try:
            await self._batcher.submit(
                entry.record.queue, envelope, entry.record.max_batch_size, record, finished
            )
        except InferqError as error:
            # The broker may still get the message after we gave up on its confirm: mark the
            # task rejected so no worker runs it, unless one already did (then it counts).
            if not await self._store.reject(task_id):
                return Submitted(task_id, created=True, unrecorded=unrecorded)
            if caller is not None:  # never accepted: it holds none of the key's slots
                await self._limiter.release(caller, task_id)
            if idempotency_key is not None:  # a retry with the same key tries again
                await self._redis.delete(self._names.idempotency(model, idempotency_key))
            if isinstance(error, QueueFull):
                raise await self._queue_full(entry) from error
            raise
        return Submitted(task_id, created=True, unrecorded=unrecorded)

    async def _claim(self, key: str, model: str, request: bytes, task_id: str) -> str | None:
        """Binds the key to ``task_id``; if it was bound already, the earlier task's id."""
        if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable():
            raise InvalidRequest(
                f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} printable characters"
            )
        digest = hashlib.sha256(request).hexdigest()[:32]
        redis_key = self._names.idempotency(model, key)
        if await self._redis.set(redis_key, f"{task_id} {digest}", nx=True, ex=self._ttl_s):
            return None
        earlier = await self._redis.get(redis_key)
        if earlier is None:  # the other request's publish failed a moment ago
            raise InvalidRequest("a request with this Idempotency-Key just failed; retry")
        earlier_id, earlier_digest = (
            earlier.decode() if isinstance(earlier, bytes) else earlier
        ).split(" ")
        if earlier_digest != digest:
            raise InvalidRequest(
                "this Idempotency-Key was used with a different request body", task_id=earlier_id
            )
        return str(earlier_id)

    async def _queue_full(self, entry: LiveModel) -> QueueFull:
        """429 with a Retry-After of about the time the workers need to serve half the
        backlog at the rate they report."""
        stats = await self._publisher.queue_stats(entry.record.queue)
        depth = stats.messages if stats else 0
        rate = sum(worker.rate_per_s for worker in entry.workers)
        low, high = RETRY_AFTER_BOUNDS_S
        retry_after = high if rate <= 0 else min(high, max(low, math.ceil(depth / rate / 2)))
        return QueueFull(
            f"the queue of {entry.record.name!r} is full ({depth} tasks waiting, workers "
            f"finishing {rate:.1f}/s); retry later",
            retry_after_s=retry_after,
            queue_depth=depth,
        )
