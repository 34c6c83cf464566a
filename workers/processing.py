"""Per-batch work, in four named steps: decode -> run -> store -> ack.

The ack policy is "ack when saved": a delivery is acked only after its final state is in
Redis, so a worker killed at any point leaves the task in the queue and the broker redelivers
it. Storing a final state is idempotent (see `inferq.tasks.store`), so a redelivered task that
had already finished is acked without running again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aio_pika.abc import AbstractIncomingMessage
from google.protobuf.message import DecodeError
from opentelemetry import trace
from redis.exceptions import RedisError

from inferq.errors import InvalidRequest
from inferq.names import REPUBLISHED_HEADER
from inferq.tasks.outcomes import (
    DEADLINE_EXCEEDED,
    Outcome,
    delivery_limit_exceeded,
    failure,
    model_failure,
)
from inferq.tasks.state import TaskStatus, now_ms
from inferq.tasks.store import NotReplicated, TaskStore
from inferq.tracing import start_consumer_span
from proto.task_pb2 import TaskBatch, TaskEnvelope
from workers import context, metrics
from workers.base import Model
from workers.context import TaskCaller

logger = logging.getLogger(__name__)

STORE_RETRY_S = 0.5
T = TypeVar("T")


@dataclass
class Delivery:
    """One message from the queue, decoded as far as the runtime understands it, with the
    span that follows it from pickup to ack."""

    message: AbstractIncomingMessage
    envelope: TaskEnvelope
    span: trace.Span
    picked_up_ms: int  # wall clock, to compare with the gateway's created_at_ms
    picked_up: float  # perf_counter, for the run time

    @property
    def task_id(self) -> str:
        return self.envelope.task_id


async def retry_redis(call: Callable[[], Awaitable[T]], stopping: asyncio.Event) -> T:
    """Retries a Redis call until it works: a task must not be acked before its result is
    stored. Gives up (re-raises) only once the worker is stopping."""
    while True:
        try:
            return await call()
        except RedisError as error:
            if stopping.is_set():
                raise
            if isinstance(error, NotReplicated):  # held unacked until the replicas have it
                logger.warning(
                    "result not replicated, writing again in %.1fs: %s", STORE_RETRY_S, error
                )
            else:
                logger.warning("Redis unavailable, retrying in %.1fs: %s", STORE_RETRY_S, error)
            await asyncio.sleep(STORE_RETRY_S)


class BatchProcessor:
    """Takes a batch of deliveries from the queue to acked, stored outcomes."""

    def __init__(
        self,
        model: Model,  # type: ignore[type-arg]
        store: TaskStore,
        worker_id: str,
        stopping: asyncio.Event,
        max_batch_size: int,
        delivery_limit: int,
        ack_multiple: bool,
        access_log: bool = True,
    ) -> None:
        """``max_batch_size``: most requests per `Model.process_batch` call. ``ack_multiple``:
        batches are handled one at a time, so a batch's last message can ack all of it in
        one frame. ``access_log``: log a line for each succeeded task too, not only for the
        others."""
        self.model = model
        self._access_log = access_log
        self._max_batch_size = max_batch_size
        self._delivery_limit = delivery_limit
        self._ack_multiple = ack_multiple
        self._store = store
        self._worker_id = worker_id
        self._stopping = stopping
        self.tasks_done = 0
        self.tasks_failed = 0
        self.tasks_in_flight = 0
        self._in_flight_gauge = metrics.IN_FLIGHT.labels(model.name)
        self._queue_wait = metrics.QUEUE_WAIT_SECONDS.labels(model.name)
        self._inference_seconds = metrics.INFERENCE_SECONDS.labels(model.name)
        self._batch_size = metrics.BATCH_SIZE.labels(model.name)
        self._span_name = f"run {model.name}"

    def _with_redis(self, call: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        return retry_redis(call, self._stopping)

    async def handle(self, messages: list[AbstractIncomingMessage]) -> None:
        """decode -> run -> store -> ack."""
        deliveries = await self._decode(messages)
        outcomes: dict[str, Outcome] = {}
        self._count_in_flight(len(deliveries))
        try:
            outcomes = await self._run(deliveries)
            stored = await self._store_outcomes(
                outcomes, {d.task_id: d.envelope for d in deliveries}
            )
        except RedisError:  # raised only while stopping
            stored = False
        finally:
            self._count_in_flight(-len(deliveries))
        readable = [m for m in messages if not m.processed]  # the others were rejected
        if not stored:  # stopping while Redis is down: give the tasks back, don't lose them
            for message in readable:
                await settle(message.nack(requeue=True))
        elif self._ack_multiple and readable:
            # One frame acks the whole batch: it holds every delivery not yet settled.
            await settle(readable[-1].ack(multiple=True))
        else:
            for message in readable:
                await settle(message.ack())
        for delivery in deliveries:
            self._close_span(delivery, outcomes.get(delivery.task_id), stored)

    def _count_in_flight(self, change: int) -> None:
        self.tasks_in_flight += change
        self._in_flight_gauge.set(self.tasks_in_flight)

    async def _decode(self, messages: list[AbstractIncomingMessage]) -> list[Delivery]:
        deliveries = []
        picked_up_ms, picked_up = now_ms(), time.perf_counter()
        for message in messages:
            try:
                tasks = TaskBatch.FromString(message.body).tasks
            except DecodeError:
                tasks = None
            if not tasks:
                logger.error("dropping a message that is not a task batch")
                await settle(message.reject(requeue=False))
                continue
            for envelope in tasks:
                attributes = {"inferq.task_id": envelope.task_id, "inferq.model": envelope.model}
                if envelope.caller_key_id:
                    attributes["inferq.caller.key_id"] = envelope.caller_key_id
                    attributes["inferq.caller.name"] = envelope.caller_name
                span = start_consumer_span(self._span_name, envelope.trace_context, **attributes)
                self._queue_wait.observe(max(0, picked_up_ms - envelope.created_at_ms) / 1000)
                deliveries.append(Delivery(message, envelope, span, picked_up_ms, picked_up))
        return deliveries

    def _close_span(self, delivery: Delivery, outcome: Outcome | None, stored: bool) -> None:
        """Ends the task's span and writes its access-log line: one INFO line per task, as
        uvicorn's access log and Celery's "succeeded in" do, so the trace id a client got
        leads to the worker that ran its task."""
        span = delivery.span
        if not stored:
            outcome, status = None, "requeued (not stored)"
        else:
            status = outcome.status.value if outcome else "skipped (already final)"
        span.set_attribute("inferq.status", status)
        error = ""
        if outcome and outcome.error_type:
            error = f"{outcome.error_type}: {outcome.error_message}"
        if error:
            span.set_status(trace.StatusCode.ERROR, error)
        succeeded = outcome is not None and outcome.status is TaskStatus.SUCCEEDED
        if (succeeded and not self._access_log) or not logger.isEnabledFor(logging.INFO):
            span.end()
            return
        context = span.get_span_context()
        run_ms = round((time.perf_counter() - delivery.picked_up) * 1000, 3)
        queue_ms = max(0, delivery.picked_up_ms - delivery.envelope.created_at_ms)
        caller = delivery.envelope.caller_name
        logger.info(
            "task %s in %.1f ms, queued %d ms%s%s",
            status,
            run_ms,
            queue_ms,
            f", key {caller}" if caller else "",
            f": {error}" if error else "",
            extra={
                "task_id": delivery.task_id,
                "model": self.model.name,
                "caller": caller or None,
                "status": status,
                "queue_ms": queue_ms,
                "run_ms": run_ms,
                "worker_id": self._worker_id,
                "trace_id": format(context.trace_id, "032x"),
                "span_id": format(context.span_id, "016x"),
            },
        )
        span.end()

    async def _run(self, deliveries: list[Delivery]) -> dict[str, Outcome]:
        """Decides each task's outcome, running the model on those that need it."""
        outcomes: dict[str, Outcome] = {}
        now = now_ms()
        fresh = []
        for delivery in deliveries:
            deadline = delivery.envelope.deadline_ms
            if deadline and now > deadline:
                outcomes[delivery.envelope.task_id] = DEADLINE_EXCEEDED
            else:
                fresh.append(delivery)
        if not self.model.mark_running and all(_first_delivery(d.message) for d in fresh):
            return await self._run_unmarked(fresh, outcomes)
        # A task already running was running when its worker died, and may be what killed
        # it: it is left alone here and run alone below.
        previous = await self._with_redis(
            lambda: self._store.mark_running(
                [d.envelope for d in fresh], self._worker_id, leave_running=True
            )
        )
        batch: list[tuple[Delivery, Any]] = []
        suspects = []
        for delivery, status in zip(fresh, previous, strict=True):
            if status is TaskStatus.RUNNING:
                suspects.append(delivery)
            elif not (status and status.is_final):  # else done already, or never accepted
                self._add_request(delivery, batch, outcomes)
        await self._run_batch(batch, outcomes)
        for delivery in suspects:
            await self._run_suspect(delivery)
        return outcomes

    async def _run_unmarked(
        self, fresh: list[Delivery], outcomes: dict[str, Outcome]
    ) -> dict[str, Outcome]:
        """First deliveries of a model that is not marked running: run them all, and record
        their start with their final state."""
        started_ms = now_ms()
        batch: list[tuple[Delivery, Any]] = []
        for delivery in fresh:
            self._add_request(delivery, batch, outcomes)
        await self._run_batch(batch, outcomes)
        for delivery in fresh:
            outcome = outcomes[delivery.task_id]
            outcomes[delivery.task_id] = outcome.started_unmarked(started_ms)
        return outcomes

    async def _run_batch(
        self, batch: list[tuple[Delivery, Any]], outcomes: dict[str, Outcome]
    ) -> None:
        """Runs the requests in groups of at most ``max_batch_size``; adds their outcomes."""
        for start in range(0, len(batch), self._max_batch_size):
            group = batch[start : start + self._max_batch_size]
            results = await self._predict(
                [request for _, request in group], [_caller(d.envelope) for d, _ in group]
            )
            for (delivery, _), outcome in zip(group, results, strict=True):
                outcomes[delivery.task_id] = outcome

    async def _run_suspect(self, delivery: Delivery) -> None:
        """Runs one task that was running when a worker died, alone, and stores its outcome
        at once: if it kills this worker too, it alone is blamed (its attempts count), and
        the tasks that shared its message and ran before it are done."""
        task_id = delivery.task_id
        state = await self._with_redis(lambda: self._store.get(task_id))
        if state and state.attempts >= self._delivery_limit:
            # Started that many times, and its worker died each time: no more.
            await self._store_outcomes(
                {task_id: delivery_limit_exceeded(state.attempts)}, {task_id: delivery.envelope}
            )
            return
        [status] = await self._with_redis(
            lambda: self._store.mark_running([delivery.envelope], self._worker_id)
        )
        if status and status.is_final:
            return
        outcomes: dict[str, Outcome] = {}
        alone: list[tuple[Delivery, Any]] = []
        self._add_request(delivery, alone, outcomes)
        await self._run_batch(alone, outcomes)
        await self._store_outcomes(outcomes, {delivery.task_id: delivery.envelope})

    def _add_request(
        self, delivery: Delivery, batch: list[tuple[Delivery, Any]], outcomes: dict[str, Outcome]
    ) -> None:
        """Appends the task's decoded request to ``batch``, or fails it if it does not decode."""
        try:
            batch.append((delivery, self.model.request_type.FromString(delivery.envelope.request)))
        except DecodeError as error:
            outcomes[delivery.task_id] = failure(InvalidRequest(str(error)))

    async def _predict(
        self,
        requests: list,  # type: ignore[type-arg]
        callers: list[TaskCaller | None],
    ) -> list[Outcome]:
        """Runs the batch (``callers``: who sent each request, for `workers.context`); if it
        raises, runs each request alone so one bad input fails only its own task."""
        if not requests:
            return []
        started = time.perf_counter()
        try:
            with context.running_batch(callers):
                responses = await self.model.process_batch(requests)
            self._inference_seconds.observe(time.perf_counter() - started)
            self._batch_size.observe(len(requests))
            return [Outcome(TaskStatus.SUCCEEDED, result=r.SerializeToString()) for r in responses]
        except Exception as error:  # noqa: BLE001 - any error of the model fails its task
            if len(requests) == 1:
                return [model_failure(error)]
        return [
            (await self._predict([request], [who]))[0]
            for request, who in zip(requests, callers, strict=True)
        ]

    async def _store_outcomes(
        self, outcomes: dict[str, Outcome], tasks: dict[str, TaskEnvelope]
    ) -> bool:
        try:
            if not outcomes:
                # Every task was final already: written by an earlier delivery, whose worker
                # may not have seen it replicated (INFERQ_REDIS_MIN_REPLICAS_ACK).
                await self._with_redis(self._store.wait_replicated)
                return True
            await self._with_redis(lambda: self._store.finish(outcomes, self._worker_id, tasks))
        except asyncio.CancelledError:
            raise
        except RedisError:
            return False
        by_status = collections.Counter(outcome.status for outcome in outcomes.values())
        for status, count in by_status.items():
            metrics.RESULTS_STORED.labels(self.model.name, status.value).inc(count)
        succeeded = by_status[TaskStatus.SUCCEEDED]
        self.tasks_done += succeeded
        self.tasks_failed += len(outcomes) - succeeded
        return True


def _caller(envelope: TaskEnvelope) -> TaskCaller | None:
    key_id = envelope.caller_key_id
    return TaskCaller(key_id, envelope.caller_name) if key_id else None


def _first_delivery(message: AbstractIncomingMessage) -> bool:
    """Whether no worker can have started the message's tasks before: neither redelivered
    by the broker nor published again by the dead-letter consumer."""
    return not message.redelivered and REPUBLISHED_HEADER not in (message.headers or {})


async def settle(operation: object) -> None:
    """Ack/nack/reject, tolerating a channel that closed meanwhile: the broker then requeues
    the delivery itself, and the idempotent store makes the redelivery harmless."""
    try:
        await operation  # type: ignore[misc]
    except Exception as error:  # noqa: BLE001 - any channel failure means the same here
        logger.warning("could not settle a delivery (it will be redelivered): %s", error)
