"""The one way inferq connects to Redis: a bounded pool that waits for a free connection
rather than failing under load, and brief retries on connection errors, so a Redis restart
costs a retry, not a failed request."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

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
