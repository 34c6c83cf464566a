"""The gateway's side of RabbitMQ: publishing tasks with confirms, and queue depths."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError, PublishError
from aiormq import spec
from prometheus_client import Histogram

from inferq.amqp import connect_with_retry
from inferq.errors import BrokerUnavailable, QueueFull
from inferq.tasks.state import now_ms
from proto.task_pb2 import TaskBatch, TaskEnvelope

PUBLISH_SECONDS = Histogram(
    "inferq_gateway_publish_seconds",
    "Time from publishing a task to the broker's confirm",
    ["queue"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)

logger = logging.getLogger(__name__)

TASK_BATCH_CONTENT_TYPE = "application/x-protobuf; proto=inferq.TaskBatch"
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


@dataclass(frozen=True)
class QueueStats:
    messages: int
    consumers: int


class TaskPublisher:
    """Publishes persistent task messages and returns only once the broker confirmed them.

    It connects in the background, so the gateway starts (and answers 503) while the broker
    is down; ``on_connect`` callbacks run once the first connection is up.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        timeout_s: float,
        on_connect: Callable[[AbstractRobustConnection], Awaitable[None]],
    ) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._on_connect = on_connect
        self.connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._connecting: asyncio.Task[None] | None = None

    async def start(self, wait_s: float = 5.0) -> None:
        """Starts connecting; waits up to ``wait_s`` for it, then lets it go on behind."""
        self._connecting = asyncio.create_task(self._connect(), name="broker-connect")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._connecting), wait_s)

    async def _connect(self) -> None:
        connection = await connect_with_retry(self._url, "inferq-gateway")
        # on_return_raises: a task for a queue that does not exist fails loudly.
        self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await self._on_connect(connection)
        self.connection = connection
        logger.info("connected to the broker")

    async def close(self) -> None:
        if self._connecting:
            self._connecting.cancel()
        if self.connection:
            await self.connection.close()

    async def publish(
        self, queue: str, tasks: Sequence[TaskEnvelope], headers: dict[str, Any] | None = None
    ) -> None:
        """One persistent message holding ``tasks`` (a `TaskBatch`); returns once the broker
        confirmed it."""
        if self._channel is None or self._channel.is_closed:
            raise BrokerUnavailable("the message broker is unavailable", retry_after_s=2)
        # The broker dead-letters a message still queued at the last of its tasks' deadlines
        # (-> expired); a worker skips any task of it that is past its own.
        ttl_ms = max(task.deadline_ms for task in tasks) - now_ms() if tasks else 0
        # The frame's properties made directly: an aio_pika.Message and its conversion were
        # a sixth of the gateway's publishing CPU (load_testing/README.md).
        properties = spec.Basic.Properties(
            delivery_mode=PERSISTENT,
            message_id=tasks[0].task_id if tasks else None,
            content_type=TASK_BATCH_CONTENT_TYPE,
            headers=headers,
            expiration=str(max(ttl_ms, 1)),
        )
        body = TaskBatch(tasks=tasks).SerializeToString()
        started = time.perf_counter()
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for runs the publish in a
            # task of its own, one more event-loop turn before the message is written.
            async with asyncio.timeout(self._timeout_s):
                channel = await self._channel.get_underlay_channel()
                # mandatory: a queue that does not exist fails the publish (PublishError).
                await channel.basic_publish(
                    body, routing_key=queue, properties=properties, mandatory=True
                )
            PUBLISH_SECONDS.labels(queue).observe(time.perf_counter() - started)
        except DeliveryError as error:
            # reject-publish: the queue is at its length limit. Nothing accepted is dropped.
            raise QueueFull(f"the queue {queue!r} is full", retry_after_s=1) from error
        except PublishError as error:
            raise BrokerUnavailable(
                f"the queue {queue!r} does not exist yet", retry_after_s=1
            ) from error
        except (TimeoutError, *CONNECTION_EXCEPTIONS) as error:
            logger.warning("publish to %s failed: %r", queue, error)
            raise BrokerUnavailable("the message broker is unavailable", retry_after_s=2) from error

    async def queue_stats(self, queue: str) -> QueueStats | None:
        """Messages waiting and consumers of a queue; None if it does not exist or the
        broker is down. (A passive declare of a missing queue closes its channel: hence a
        channel of its own.)"""
        if self.connection is None:
            return None
        try:
            channel = await self.connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
                result = declared.declaration_result
                return QueueStats(result.message_count or 0, result.consumer_count or 0)
            finally:
                if not channel.is_closed:
                    await channel.close()
        except CONNECTION_EXCEPTIONS:
            return None

    @property
    def is_ready(self) -> bool:
        return (
            self.connection is not None
            and not self.connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )
