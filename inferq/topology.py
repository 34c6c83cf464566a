"""Declares the broker objects: one durable quorum queue per model, and the dead-letter
exchange and queue. Workers declare their model's queue; the gateway declares the dead-letter
pair it consumes. Declaring is idempotent, and the arguments here are the only ones used, so
two declarers never disagree."""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from inferq.names import Names


def model_queue_arguments(names: Names, max_length: int, delivery_limit: int) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        # A task that kills its worker again and again is dead-lettered, not looped forever.
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": names.dead_letter_exchange,
        # At-least-once dead-lettering needs reject-publish; it keeps dead letters safe too.
        "x-dead-letter-strategy": "at-least-once",
        # A full queue refuses new tasks (the gateway answers 429); accepted ones stay.
        "x-overflow": "reject-publish",
        "x-max-length": max_length,
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
    channel: AbstractChannel, names: Names, model: str, max_length: int, delivery_limit: int
) -> AbstractQueue:
    await declare_dead_letters(channel, names)
    return await channel.declare_queue(
        names.model_queue(model),
        durable=True,
        arguments=model_queue_arguments(names, max_length, delivery_limit),
    )
