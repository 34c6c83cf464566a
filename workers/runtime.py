"""The worker runtime: serves one `Model` from its queue.

It connects, registers the model, heartbeats, consumes with a prefetch and gathers
deliveries into batches; `workers.processing` does the work of each batch (decode -> run ->
store -> ack, acking only once the result is saved).

Shutdown, in this order: stop consuming (and starting batches); requeue deliveries not yet
started; let running batches finish within the grace period, then cancel those still running
(the broker requeues their deliveries at the close); leave the registry; unload the model;
close.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from pathlib import Path

import prometheus_client
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from opentelemetry import trace
from redis.asyncio import Redis
from redis.exceptions import RedisError

from inferq.amqp import connect_with_retry
from inferq.heap import freeze_startup_heap
from inferq.names import Names
from inferq.redis_client import connect_redis, warn_if_not_persistent
from inferq.settings import WorkerSettings, health_file
from inferq.tasks.state import now_ms
from inferq.tasks.store import TaskStore
from inferq.topology import declare_model_queue
from model_registry.descriptors import build_descriptor_set
from model_registry.record import ModelRecord, WorkerHeartbeat
from model_registry.registry import Registry
from workers.base import Model
from workers.processing import BatchProcessor, retry_redis, settle

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

RATE_SMOOTHING = 0.3
CONSUME_ATTEMPTS = 5


class Worker:
    """Consumes a model's queue, runs the model, stores results, heartbeats."""

    def __init__(
        self,
        model: Model,  # type: ignore[type-arg]
        settings: WorkerSettings,
        worker_id: str | None = None,
        freeze_heap: bool = False,
    ) -> None:
        """``freeze_heap``: the process runs this worker and nothing else (`inferq worker`):
        once the model is loaded, what it holds leaves the garbage collector's sight
        (`inferq.heap`)."""
        self.model = model
        self.freeze_heap = freeze_heap
        self.settings = settings
        self.names = Names(settings.namespace)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"
        self.max_batch_size = settings.max_batch_size or model.max_batch_size
        self.max_batch_delay_s = (
            settings.max_batch_delay_ms
            if settings.max_batch_delay_ms is not None
            else model.max_batch_delay_ms
        ) / 1000
        self.concurrency = settings.concurrency or model.concurrency
        self.prefetch = settings.prefetch or max(4, 2 * self.max_batch_size * self.concurrency)
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._in_flight = 0  # messages
        self._idle = asyncio.Event()  # set while no batch is running
        self._idle.set()
        self._started_at_ms = now_ms()
        self._rate_per_s = 0.0
        self._health_file_failed = False

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
        self._redis: Redis = connect_redis(
            self.settings.redis_url, sentinel_password=self.settings.redis_sentinel_password
        )
        await warn_if_not_persistent(self._redis)
        self._store = TaskStore(
            self._redis,
            self.names,
            self.settings.result_ttl_s,
            self.settings.redis_min_replicas_ack,
            self.settings.redis_replica_timeout_ms,
        )
        self._processor = BatchProcessor(
            self.model,
            self._store,
            self.worker_id,
            self._stopping,
            max_batch_size=self.max_batch_size,
            delivery_limit=self.settings.delivery_limit,
            ack_multiple=self.concurrency == 1,
            access_log=self.settings.access_log,
        )
        self._registry = Registry(
            self._redis, self.names, self.settings.heartbeat_ttl_s, self.settings.model_record_ttl_s
        )
        await self.model.load()
        if self.freeze_heap:
            freeze_startup_heap()
        if self.settings.metrics_port:
            prometheus_client.start_http_server(self.settings.metrics_port)
        self._connection: AbstractRobustConnection = await connect_with_retry(
            self.settings.amqp_urls, self.worker_id
        )
        self._runners = [
            asyncio.create_task(self._run_batches(), name=f"runner-{i}")
            for i in range(self.concurrency)
        ]
        await self._consume()
        await retry_redis(
            lambda: self._registry.register(self._record(), self._heartbeat()), self._stopping
        )
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
        logger.info(
            "worker %s serving %s v%s from %s (prefetch %d, batch %d)",
            self.worker_id,
            self.model.name,
            self.model.version,
            self._queue.name,
            self.prefetch,
            self.max_batch_size,
        )

    async def _consume(self) -> None:
        """Declares the model's queue and starts consuming it. Retried: a consume that
        follows the declaration of a new quorum queue too closely can fail on RabbitMQ 3.10
        (the queue's process is not up yet), and it closes the channel."""
        for attempt in range(1, CONSUME_ATTEMPTS + 1):
            try:
                channel = await self._connection.channel()
                await channel.set_qos(prefetch_count=self.prefetch)
                self._queue: AbstractQueue = await declare_model_queue(
                    channel,
                    self.names,
                    self.model.name,
                    self._queue_max_length,
                    self.settings.delivery_limit,
                    self.settings.queue_type,
                )
                self._consumer_tag = await self._queue.consume(self._inbox.put)
                return
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as error:
                if attempt == CONSUME_ATTEMPTS:
                    raise
                logger.warning("could not consume %s (%r); retrying", self.model.name, error)
                await asyncio.sleep(0.5 * attempt)

    async def stop(self) -> None:
        logger.info("worker %s stopping", self.worker_id)
        self._stopping.set()  # from here on no runner starts a batch (see _run_batches)
        await self._queue.cancel(self._consumer_tag)
        await self._requeue_waiting()
        try:
            await asyncio.wait_for(self._idle.wait(), self.settings.grace_period_s)
        except TimeoutError:
            logger.warning(
                "grace period over: cutting %d deliveries in flight; the broker requeues them",
                self._in_flight,
            )
        # Cancel the runners themselves (idle ones wait on the inbox, any still running are
        # past the grace period) and wait until they are out: no batch may run on into the
        # unload and the close below.
        for runner in self._runners:
            runner.cancel()
        await asyncio.wait(self._runners)
        await self._requeue_waiting()
        self._heartbeat_task.cancel()
        await self._registry.deregister(self.model.name, self.worker_id)
        self._health_file.unlink(missing_ok=True)  # noqa: ASYNC240 - a few µs
        await self.model.unload()
        self.model.close_executor()
        await self._connection.close()
        await self._redis.aclose()
        logger.info("worker %s stopped", self.worker_id)

    async def _requeue_waiting(self) -> None:
        while not self._inbox.empty():
            message = self._inbox.get_nowait()
            await settle(message.nack(requeue=True))

    # --- registry ------------------------------------------------------------------------
    @property
    def _health_file(self) -> Path:
        return Path(health_file(self.settings, self.model.name, self.worker_id))

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
            max_batch_size=self.max_batch_size,
            scale_to_zero=model.scale_to_zero,
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
            tasks_done=self._processor.tasks_done,
            tasks_failed=self._processor.tasks_failed,
            in_flight=self._processor.tasks_in_flight,
            rate_per_s=round(self._rate_per_s, 3),
        )

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval_s
        finished_before = 0
        while True:
            await asyncio.sleep(interval)
            finished = self._processor.tasks_done + self._processor.tasks_failed
            # Smoothed service rate; the gateway's 429 Retry-After is computed from it.
            latest = (finished - finished_before) / interval
            self._rate_per_s += RATE_SMOOTHING * (latest - self._rate_per_s)
            finished_before = finished
            try:
                if not await self._registry.beat(self._heartbeat()):
                    logger.warning("the registry lost this model's record; registering again")
                    await self._registry.register(self._record(), self._heartbeat())
            except RedisError as error:
                logger.warning("heartbeat failed (will retry): %s", error)
            else:
                self._touch_health_file()

    def _touch_health_file(self) -> None:
        """Healthy = the event loop runs and Redis takes heartbeats. A file that cannot be
        written fails the liveness probe, not the heartbeats (they kept the worker in the
        registry while it consumed: a crash of this loop made it vanish, still working)."""
        try:
            self._health_file.touch()
        except OSError as error:
            if not self._health_file_failed:
                logger.warning(
                    "cannot touch the liveness file (INFERQ_HEALTH_DIR): %s; "
                    "`inferq worker --check` will report this worker unhealthy",
                    error,
                )
            self._health_file_failed = True
        else:
            self._health_file_failed = False

    # --- the work ------------------------------------------------------------------------
    async def _run_batches(self) -> None:
        while True:
            messages = await self._next_batch()
            if self._stopping.is_set():
                # Taken after stop began (cancelling the consumer is a round trip to the
                # broker): a leaving worker starts nothing, it gives them back.
                for message in messages:
                    await settle(message.nack(requeue=True))
                return
            self._in_flight += len(messages)
            self._idle.clear()
            try:
                await self._processor.handle(messages)
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
