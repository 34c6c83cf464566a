"""Declares the broker objects: one durable queue per model (classic by default, quorum by
``INFERQ_QUEUE_TYPE``), and the dead-letter exchange and queue. Workers declare their
model's queue; the gateway declares the dead-letter pair it consumes. Declaring is idempotent,
and the arguments here are the only ones used, so two declarers never disagree."""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from inferq.names import Names
from inferq.settings import QueueType


def model_queue_arguments(
    names: Names, max_length: int, delivery_limit: int, queue_type: QueueType
) -> dict[str, Any]:
    common = {
        # Tasks still queued at their deadline go to the dead-letter queue (-> expired).
        "x-dead-letter-exchange": names.dead_letter_exchange,
        # A full queue refuses new tasks (the gateway answers 429); accepted ones stay.
        "x-overflow": "reject-publish",
        "x-max-length": max_length,
    }
    if queue_type == "classic":
        # Persistent messages and confirms keep accepted tasks through a broker restart; the
        # worker counts each task's starts in Redis and fails one that keeps crashing it.
        return {"x-queue-type": "classic", **common}
    return {
        "x-queue-type": "quorum",
        # The broker, too, dead-letters a message that keeps killing its workers.
        "x-delivery-limit": delivery_limit,
        # At-least-once dead-lettering needs reject-publish; it keeps dead letters safe too.
        "x-dead-letter-strategy": "at-least-once",
        **common,
    }


async def declare_dead_letters(channel: AbstractChannel, names: Names) -> AbstractQueue:
    exchange = await channel.declare_exchange(
        names.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    queue = await channel.declare_queue(
        names.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind(exchange)
    return queue


async def declare_model_queue(
    channel: AbstractChannel,
    names: Names,
    model: str,
    max_length: int,
    delivery_limit: int,
    queue_type: QueueType,
) -> AbstractQueue:
    await declare_dead_letters(channel, names)
    return await channel.declare_queue(
        names.model_queue(model),
        durable=True,
        arguments=model_queue_arguments(names, max_length, delivery_limit, queue_type),
    )
