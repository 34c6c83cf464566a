"""Consumes the dead-letter queue: a task the broker gave up on (delivery limit reached, or
deadline passed while queued) is marked failed or expired, so its poller learns why.

RabbitMQ counts a delivery for every message returned when a worker dies, whether that
message was running or only prefetched. So a task that reached the delivery limit is failed
only if it was itself started that many times (its ``attempts``); one that merely sat in the
prefetch of a worker that another task kept killing is published again, a bounded number of
times.
"""

from __future__ import annotations

import asyncio
import logging

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from google.protobuf.message import DecodeError
from redis.exceptions import RedisError

from api_service.broker import TaskPublisher
from inferq.errors import InferqError
from inferq.names import Names
from inferq.tasks import DEADLINE_EXCEEDED, Outcome, TaskStatus, TaskStore, now_ms
from inferq.topology import declare_dead_letters
from inferq.tracing import trace_id_in
from proto.task_pb2 import TaskEnvelope

logger = logging.getLogger(__name__)

REPUBLISHED_HEADER = "x-inferq-republished"
MAX_REPUBLISH = 3


def outcome_for(reason: str, attempts: int) -> Outcome:
    if reason == "expired":
        return DEADLINE_EXCEEDED
    if reason == "delivery_limit":
        return Outcome(
            TaskStatus.FAILED,
            error_type="DeliveryLimitExceeded",
            error_message=f"the task was started {attempts} times and its worker died each "
            "time; its input may be crashing the worker",
        )
    return Outcome(
        TaskStatus.FAILED, error_type="Rejected", error_message=f"dead-lettered: {reason}"
    )


class DeadLetterConsumer:
    def __init__(
        self,
        channel: AbstractChannel,
        names: Names,
        store: TaskStore,
        publisher: TaskPublisher,
        delivery_limit: int,
    ) -> None:
        self._channel = channel
        self._names = names
        self._store = store
        self._publisher = publisher
        self._delivery_limit = delivery_limit

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
        log = {
            "task_id": envelope.task_id,
            "model": envelope.model,
            "trace_id": trace_id_in(envelope.trace_context),
        }
        try:
            state = await self._store.get(envelope.task_id)
            attempts = state.attempts if state else 0
            if reason == "delivery_limit" and await self._republished(envelope, message, attempts):
                logger.info("task republished (its worker died for another task)", extra=log)
            else:
                await self._store.finish(
                    {envelope.task_id: outcome_for(reason, attempts)}, worker_id=""
                )
                logger.info("task dead-lettered (%s)", reason, extra=log)
        except (RedisError, InferqError) as error:
            logger.warning("could not handle a dead letter, retrying: %s", error, extra=log)
            await asyncio.sleep(1)
            await message.nack(requeue=True)
            return
        await message.ack()

    async def _republished(
        self, envelope: TaskEnvelope, message: AbstractIncomingMessage, attempts: int
    ) -> bool:
        """Publishes the task to its queue again if it was not itself started up to the
        limit; a few times at most, so nothing loops forever."""
        republished = int(str((message.headers or {}).get(REPUBLISHED_HEADER, 0)))
        ttl_ms = envelope.deadline_ms - now_ms() if envelope.deadline_ms else 1 << 31
        if attempts >= self._delivery_limit or republished >= MAX_REPUBLISH or ttl_ms <= 0:
            return False
        await self._publisher.publish(
            self._names.model_queue(envelope.model),
            message.body,
            envelope.task_id,
            ttl_ms,
            headers={**envelope.trace_context, REPUBLISHED_HEADER: republished + 1},
        )
        return True
