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

from api_service.core.broker import TaskPublisher
from inferq.errors import InferqError
from inferq.names import REPUBLISHED_HEADER, Names
from inferq.tasks.outcomes import (
    DEADLINE_EXCEEDED,
    Outcome,
    dead_lettered,
    delivery_limit_exceeded,
)
from inferq.tasks.state import now_ms
from inferq.tasks.store import TaskStore
from inferq.topology import declare_dead_letters
from inferq.tracing import trace_id_in
from proto.task_pb2 import TaskBatch, TaskEnvelope

logger = logging.getLogger(__name__)

MAX_REPUBLISH = 3


def outcome_for(reason: str, attempts: int) -> Outcome:
    if reason == "expired":
        return DEADLINE_EXCEEDED
    if reason == "delivery_limit":
        return delivery_limit_exceeded(attempts)
    return dead_lettered(reason)


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
            tasks = list(TaskBatch.FromString(message.body).tasks)
        except DecodeError:
            tasks = []
        if not tasks:
            logger.error("dropping a dead letter that is not a task batch")
            await message.ack()
            return
        headers = message.headers or {}
        reason = str(headers.get("x-first-death-reason", "rejected"))
        republished = int(str(headers.get(REPUBLISHED_HEADER, 0)))
        try:
            states = [await self._store.get(task.task_id) for task in tasks]
            outcomes, again = {}, []
            for task, state in zip(tasks, states, strict=True):
                attempts = state.attempts if state else 0
                if reason == "delivery_limit" and self._may_republish(task, attempts, republished):
                    again.append(task)
                else:
                    outcomes[task.task_id] = outcome_for(reason, attempts)
            if again:
                await self._publisher.publish(
                    self._names.model_queue(again[0].model),
                    again,
                    headers={REPUBLISHED_HEADER: republished + 1},
                )
            await self._store.finish(
                outcomes, worker_id="", tasks={task.task_id: task for task in tasks}
            )
        except (RedisError, InferqError) as error:
            logger.warning("could not handle a dead letter, retrying: %s", error)
            await asyncio.sleep(1)
            await message.nack(requeue=True)
            return
        await message.ack()
        for task in tasks:
            log = {
                "task_id": task.task_id,
                "model": task.model,
                "trace_id": trace_id_in(task.trace_context),
            }
            if task.task_id in outcomes:
                logger.info("task dead-lettered (%s)", reason, extra=log)
            else:
                logger.info("task republished (its worker died for another task)", extra=log)

    def _may_republish(self, task: TaskEnvelope, attempts: int, republished: int) -> bool:
        """Whether to publish the task to its queue again: yes if it was not itself started
        up to the limit; a few times at most, so nothing loops forever."""
        in_time = not task.deadline_ms or task.deadline_ms > now_ms()
        return attempts < self._delivery_limit and republished < MAX_REPUBLISH and in_time
