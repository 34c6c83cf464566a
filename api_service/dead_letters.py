"""Consumes the dead-letter queue: a task the broker gave up on (delivery limit reached, or
deadline passed while queued) is marked failed or expired, so its poller learns why."""

from __future__ import annotations

import asyncio
import logging

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from google.protobuf.message import DecodeError
from redis.exceptions import RedisError

from inferq.names import Names
from inferq.tasks import Outcome, TaskStatus, TaskStore
from inferq.topology import declare_dead_letters
from proto.task_pb2 import TaskEnvelope

logger = logging.getLogger(__name__)


def outcome_for(reason: str, delivery_count: object) -> Outcome:
    if reason == "expired":
        return Outcome(
            TaskStatus.EXPIRED,
            error_type="DeadlineExceeded",
            error_message="the task's deadline passed before a worker could run it",
        )
    if reason == "delivery_limit":
        return Outcome(
            TaskStatus.FAILED,
            error_type="DeliveryLimitExceeded",
            error_message=f"the task was delivered {delivery_count} times without finishing; "
            "its input may be crashing the worker",
        )
    return Outcome(
        TaskStatus.FAILED, error_type="Rejected", error_message=f"dead-lettered: {reason}"
    )


class DeadLetterConsumer:
    def __init__(self, channel: AbstractChannel, names: Names, store: TaskStore) -> None:
        self._channel = channel
        self._names = names
        self._store = store

    async def start(self) -> None:
        queue = await declare_dead_letters(self._channel, self._names)
        await queue.consume(self._on_message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = TaskEnvelope.FromString(message.body)
        except DecodeError:
            logger.error("dropping a dead letter that is not a task envelope")
            await message.ack()
            return
        headers = message.headers or {}
        reason = str(headers.get("x-first-death-reason", "rejected"))
        count = headers.get("x-delivery-count", "many")
        try:
            await self._store.finish({envelope.task_id: outcome_for(reason, count)}, worker_id="")
        except RedisError as error:
            logger.warning("could not record dead letter %s: %s", envelope.task_id, error)
            await asyncio.sleep(1)
            await message.nack(requeue=True)
            return
        logger.info("task %s dead-lettered (%s)", envelope.task_id, reason)
        await message.ack()
