"""Connecting to RabbitMQ: a robust connection (aio-pika restores channels, queues and
consumers after a broker restart), first opened with retries so a process may start before
the broker does."""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

logger = logging.getLogger(__name__)

RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0)


async def connect_with_retry(url: str, name: str) -> AbstractRobustConnection:
    attempt = 0
    while True:
        try:
            return await aio_pika.connect_robust(
                url, client_properties={"connection_name": name}, timeout=10
            )
        except (*CONNECTION_EXCEPTIONS, TimeoutError) as error:
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            attempt += 1
            logger.warning("broker unreachable (%r); retrying in %.1fs", error, delay)
            await asyncio.sleep(delay)
