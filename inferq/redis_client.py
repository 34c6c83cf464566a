"""The one way inferq connects to Redis: a bounded pool that waits for a free connection
rather than failing under load, and brief retries on connection errors, so a Redis restart
costs a retry, not a failed request."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisError, TimeoutError

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 64


def connect_redis(url: str, max_connections: int = MAX_CONNECTIONS) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5.0,  # longest wait for a free connection
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[ConnectionError, TimeoutError],
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=10,
    )
    return Redis.from_pool(pool)


async def warn_if_not_persistent(redis: Redis) -> None:
    """Warns when the Redis in use keeps nothing on disk: a restart of it then forgets every
    task record and result. Quiet when it cannot tell (CONFIG disabled, Redis not up yet)."""
    try:
        async with asyncio.timeout(2):
            config = {
                **await redis.config_get("appendonly"),
                **await redis.config_get("save"),
            }
    except (RedisError, TimeoutError):
        return
    values = {_text(k): _text(v) for k, v in config.items()}
    if values.get("appendonly") == "no" and not values.get("save"):
        logger.warning(
            "this Redis keeps nothing on disk (appendonly no, no save points): a restart of it "
            "forgets every task record and result; run it with --appendonly yes"
        )


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")
