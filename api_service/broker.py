"""The gateway's side of RabbitMQ: publishing tasks with confirms, and queue depths."""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError, PublishError

from inferq.errors import BrokerUnavailable, QueueFull

logger = logging.getLogger(__name__)


class TaskPublisher:
    """Publishes persistent task messages and returns only once the broker confirmed them."""

    def __init__(self, connection: AbstractRobustConnection, timeout_s: float) -> None:
        self.connection = connection
        self._timeout_s = timeout_s
        self._channel: AbstractChannel | None = None

    async def open(self) -> AbstractChannel:
        # on_return_raises: a task for a queue that does not exist fails loudly, not silently.
        self._channel = await self.connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        return self._channel

    async def publish(self, queue: str, body: bytes, task_id: str, ttl_ms: int) -> None:
        assert self._channel is not None, "call open() first"
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=task_id,
            content_type="application/x-protobuf",
            # The broker dead-letters a task still queued at its deadline (-> expired).
            expiration=max(ttl_ms, 1) / 1000,
        )
        try:
            await asyncio.wait_for(
                self._channel.default_exchange.publish(message, routing_key=queue),
                self._timeout_s,
            )
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

    async def queue_depth(self, queue: str) -> int | None:
        """Messages waiting in a queue, or None if it does not exist or the broker is down."""
        try:
            channel = await self.connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
                return declared.declaration_result.message_count
            finally:
                if not channel.is_closed:
                    await channel.close()
        except CONNECTION_EXCEPTIONS:
            return None

    @property
    def is_ready(self) -> bool:
        return (
            not self.connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )
