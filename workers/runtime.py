"""The worker runtime: serves one `Model` from its queue.

Per batch of deliveries, four named steps: decode -> run -> store -> ack. The ack policy is
"ack when saved": a delivery is acked only after its final state is in Redis, so a worker
killed at any point leaves the task in the queue, and the broker redelivers it. Storing a
final state is idempotent (see `inferq.tasks`), so a redelivered task that had already
finished is acked without running again.

Shutdown, in this order: stop consuming; requeue deliveries not yet started; let running
batches finish within the grace period; leave the registry; unload the model; close.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from google.protobuf.message import DecodeError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from inferq.amqp import connect_with_retry
from inferq.names import Names
from inferq.redis_client import connect_redis
from inferq.settings import WorkerSettings
from inferq.tasks import Outcome, TaskStatus, TaskStore, now_ms
from inferq.topology import declare_model_queue
from model_registry.descriptors import build_descriptor_set
from model_registry.record import ModelRecord, WorkerHeartbeat
from model_registry.registry import Registry
from proto.task_pb2 import TaskEnvelope
from workers.base import Model

logger = logging.getLogger(__name__)

STORE_RETRY_S = 0.5
RATE_SMOOTHING = 0.3


@dataclass
class Delivery:
    """One message from the queue, decoded as far as the runtime understands it."""

    message: AbstractIncomingMessage
    envelope: TaskEnvelope


class Worker:
    """Consumes a model's queue, runs the model, stores results, heartbeats."""

    def __init__(
        self, model: Model, settings: WorkerSettings, worker_id: str | None = None
    ) -> None:  # type: ignore[type-arg]
        self.model = model
        self.settings = settings
        self.names = Names(settings.namespace)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"
        self.max_batch_size = settings.max_batch_size or model.max_batch_size
        self.max_batch_delay_s = (
            settings.max_batch_delay_ms
            if settings.max_batch_delay_ms is not None
            else model.max_batch_delay_ms
        ) / 1000
        self.prefetch = settings.prefetch or max(4, 2 * self.max_batch_size * settings.concurrency)
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._tasks_done = 0
        self._tasks_failed = 0
        self._in_flight = 0
        self._idle = asyncio.Event()  # set while no batch is running
        self._idle.set()
        self._started_at_ms = now_ms()
        self._rate_per_s = 0.0

    # --- lifecycle ------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then shut down in order."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def start(self) -> None:
        self._redis: Redis = connect_redis(self.settings.redis_url)
        self._store = TaskStore(self._redis, self.names, self.settings.result_ttl_s)
        self._registry = Registry(
            self._redis, self.names, self.settings.heartbeat_ttl_s, self.settings.model_record_ttl_s
        )
        await self.model.load()
        self._connection: AbstractRobustConnection = await connect_with_retry(
            self.settings.amqp_url, self.worker_id
        )
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        self._queue: AbstractQueue = await declare_model_queue(
            channel,
            self.names,
            self.model.name,
            self._queue_max_length,
            self.settings.delivery_limit,
        )
        await self._with_redis(lambda: self._registry.register(self._record(), self._heartbeat()))
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
        self._runners = [
            asyncio.create_task(self._run_batches(), name=f"runner-{i}")
            for i in range(self.settings.concurrency)
        ]
        self._consumer_tag = await self._queue.consume(self._inbox.put)
        logger.info(
            "worker %s serving %s v%s from %s (prefetch %d, batch %d)",
            self.worker_id,
            self.model.name,
            self.model.version,
            self._queue.name,
            self.prefetch,
            self.max_batch_size,
        )

    async def stop(self) -> None:
        logger.info("worker %s stopping", self.worker_id)
        await self._queue.cancel(self._consumer_tag)
        await self._requeue_waiting()
        done, pending = await asyncio.wait(
            [asyncio.create_task(self._drain(runner)) for runner in self._runners],
            timeout=self.settings.grace_period_s,
        )
        for task in pending:
            task.cancel()  # the channel closes below; the broker requeues what they held
        await self._requeue_waiting()
        self._heartbeat_task.cancel()
        await self._registry.deregister(self.model.name, self.worker_id)
        await self.model.unload()
        self.model.close_executor()
        await self._connection.close()
        await self._redis.aclose()
        logger.info("worker %s stopped", self.worker_id)

    async def _drain(self, runner: asyncio.Task[None]) -> None:
        """Let the runners finish the batches they hold, then end them."""
        await self._idle.wait()
        runner.cancel()

    async def _requeue_waiting(self) -> None:
        while not self._inbox.empty():
            message = self._inbox.get_nowait()
            await _settle(message.nack(requeue=True))

    # --- registry ------------------------------------------------------------------------
    @property
    def _queue_max_length(self) -> int:
        return self.model.queue_max_length or self.settings.queue_max_length

    def _record(self) -> ModelRecord:
        model = self.model
        return ModelRecord(
            name=model.name,
            version=model.version,
            queue=self.names.model_queue(model.name),
            request_type=model.request_type.DESCRIPTOR.full_name,
            response_type=model.response_type.DESCRIPTOR.full_name,
            descriptor_set=build_descriptor_set(model.request_type, model.response_type),
            queue_max_length=self._queue_max_length,
            description=model.description,
            registered_at_ms=now_ms(),
        )

    def _heartbeat(self) -> WorkerHeartbeat:
        return WorkerHeartbeat(
            worker_id=self.worker_id,
            model=self.model.name,
            version=self.model.version,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at_ms=self._started_at_ms,
            tasks_done=self._tasks_done,
            tasks_failed=self._tasks_failed,
            in_flight=self._in_flight,
            rate_per_s=round(self._rate_per_s, 3),
        )

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval_s
        finished_before = 0
        while True:
            await asyncio.sleep(interval)
            finished = self._tasks_done + self._tasks_failed
            # Smoothed service rate; the gateway's 429 Retry-After is computed from it.
            latest = (finished - finished_before) / interval
            self._rate_per_s += RATE_SMOOTHING * (latest - self._rate_per_s)
            finished_before = finished
            try:
                await self._registry.beat(self._heartbeat())
            except RedisError as error:
                logger.warning("heartbeat failed (will retry): %s", error)

    # --- the work ------------------------------------------------------------------------
    async def _run_batches(self) -> None:
        while True:
            messages = await self._next_batch()
            self._in_flight += len(messages)
            self._idle.clear()
            try:
                await self._handle(messages)
            finally:
                self._in_flight -= len(messages)
                if not self._in_flight:
                    self._idle.set()

    async def _next_batch(self) -> list[AbstractIncomingMessage]:
        """The first waiting delivery, plus any that arrive within the batch delay."""
        batch = [await self._inbox.get()]
        limit = self.max_batch_size
        deadline = time.monotonic() + self.max_batch_delay_s
        while len(batch) < limit:
            if not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._inbox.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _handle(self, messages: list[AbstractIncomingMessage]) -> None:
        deliveries = await self._decode(messages)
        outcomes = await self._run(deliveries)
        if await self._store_outcomes(outcomes):
            for delivery in deliveries:
                await _settle(delivery.message.ack())
        else:  # stopping while Redis is down: give the tasks back rather than lose them
            for delivery in deliveries:
                await _settle(delivery.message.nack(requeue=True))

    async def _decode(self, messages: list[AbstractIncomingMessage]) -> list[Delivery]:
        deliveries = []
        for message in messages:
            try:
                envelope = TaskEnvelope.FromString(message.body)
            except DecodeError:
                logger.error("dropping a message that is not a task envelope")
                await _settle(message.reject(requeue=False))
                continue
            deliveries.append(Delivery(message, envelope))
        return deliveries

    async def _run(self, deliveries: list[Delivery]) -> dict[str, Outcome]:
        """Decides each task's outcome, running the model on those that need it."""
        outcomes: dict[str, Outcome] = {}
        now = now_ms()
        fresh = []
        for delivery in deliveries:
            deadline = delivery.envelope.deadline_ms
            if deadline and now > deadline:
                outcomes[delivery.envelope.task_id] = Outcome(
                    TaskStatus.EXPIRED,
                    error_type="DeadlineExceeded",
                    error_message="the task's deadline passed before a worker could run it",
                )
            else:
                fresh.append(delivery)
        task_ids = [d.envelope.task_id for d in fresh]
        previous = await self._with_redis(
            lambda: self._store.mark_running(task_ids, self.worker_id)
        )
        to_run = [
            d for d, status in zip(fresh, previous, strict=True) if not (status and status.is_final)
        ]
        requests = []
        for delivery in to_run:
            try:
                requests.append(self.model.request_type.FromString(delivery.envelope.request))
            except DecodeError as error:
                outcomes[delivery.envelope.task_id] = _failure("InvalidRequest", error)
        decoded = [d for d in to_run if d.envelope.task_id not in outcomes]
        for delivery, outcome in zip(decoded, await self._predict(requests), strict=True):
            outcomes[delivery.envelope.task_id] = outcome
        return outcomes

    async def _predict(self, requests: list) -> list[Outcome]:  # type: ignore[type-arg]
        """Runs the batch; if it raises, runs each request alone so one bad input fails
        only its own task."""
        if not requests:
            return []
        try:
            responses = await self.model.process_batch(requests)
            return [Outcome(TaskStatus.SUCCEEDED, result=r.SerializeToString()) for r in responses]
        except Exception as error:  # noqa: BLE001 - any error of the model fails its task
            if len(requests) == 1:
                logger.info("model %s raised %s: %s", self.model.name, type(error).__name__, error)
                return [_failure(type(error).__name__, error)]
        return [(await self._predict([request]))[0] for request in requests]

    async def _store_outcomes(self, outcomes: dict[str, Outcome]) -> bool:
        if not outcomes:
            return True
        try:
            await self._with_redis(lambda: self._store.finish(outcomes, self.worker_id))
        except asyncio.CancelledError:
            raise
        except RedisError:
            return False
        for outcome in outcomes.values():
            if outcome.status is TaskStatus.SUCCEEDED:
                self._tasks_done += 1
            else:
                self._tasks_failed += 1
        return True

    async def _with_redis(self, call):  # type: ignore[no-untyped-def]
        """Retries a Redis call until it works: a task must not be acked before its result is
        stored. Gives up only when the worker is stopping."""
        while True:
            try:
                return await call()
            except RedisError as error:
                if self._stopping.is_set():
                    raise
                logger.warning("Redis unavailable, retrying in %.1fs: %s", STORE_RETRY_S, error)
                await asyncio.sleep(STORE_RETRY_S)


def _failure(error_type: str, error: BaseException) -> Outcome:
    return Outcome(TaskStatus.FAILED, error_type=error_type, error_message=str(error))


async def _settle(operation: object) -> None:
    """Ack/nack/reject, tolerating a channel that closed meanwhile: the broker then requeues
    the delivery itself, and the idempotent store makes the redelivery harmless."""
    try:
        await operation  # type: ignore[misc]
    except Exception as error:  # noqa: BLE001 - any channel failure means the same here
        logger.warning("could not settle a delivery (it will be redelivered): %s", error)
