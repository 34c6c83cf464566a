"""The one way inferq connects to Redis: a bounded pool that waits for a free connection
rather than failing under load, and brief retries on connection errors, so a Redis restart
costs a retry, not a failed request.

With Sentinel (``redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER[/DB]``)
the pool asks the sentinels for the master's address whenever it opens a connection
(redis-py's ``redis.asyncio.sentinel``): after a failover, a call that fails on the old
master is retried, its connection reopened on the new one, so the same client follows the
failover. Until the sentinels have promoted a replica (their down-after-milliseconds plus the
election) calls fail as they do while a single Redis restarts: the callers' own retries (the
worker's) or a 503 (the gateway's) cover that time. Pub/sub connections come from the same
pool: a subscriber that resubscribes after an error (`api_service.core.waiter`) does so on
the new master.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelAddress:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None  # the Redis password (the sentinels': a setting of its own)


def parse_sentinel_url(url: str) -> SentinelAddress:
    """``redis+sentinel://[[user]:password@]h1:26379,h2:26380/MASTER_NAME[/DB]``; raises
    ValueError saying what is wrong."""
    if not url.startswith(SENTINEL_SCHEME):
        raise ValueError(f"not a {SENTINEL_SCHEME} URL")
    rest = url[len(SENTINEL_SCHEME) :].split("?", 1)[0]
    location, _, path = rest.partition("/")
    credentials, _, hosts = location.rpartition("@")
    username = password = None
    if credentials:
        user, _, secret = credentials.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    sentinels = []
    for host_port in hosts.split(","):
        host, colon, port = host_port.strip().rpartition(":")
        if not colon:
            host, port = port, ""
        if not host:
            raise ValueError(f"an empty sentinel address in {hosts!r}")
        if port and not port.isdigit():
            raise ValueError(f"the sentinel port in {host_port.strip()!r} is not a number")
        sentinels.append((host.strip("[]"), int(port) if port else SENTINEL_PORT))
    master, _, db = path.strip("/").partition("/")
    if not master:
        raise ValueError("no master name: redis+sentinel://host:port/MASTER_NAME[/DB]")
    if db and not db.isdigit():
        raise ValueError(f"the database {db!r} is not a number")
    return SentinelAddress(sentinels, master, int(db or 0), username, password)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The Sentinel pool (connections opened on the master of the moment) that, as
    `BlockingConnectionPool` does, waits for a free connection instead of failing."""


def connect_redis(
    url: str, max_connections: int = MAX_CONNECTIONS, sentinel_password: str | None = None
) -> Redis:
    """A client of the Redis at ``url``: ``redis://``, ``rediss://``, ``unix://`` or
    ``redis+sentinel://`` (the master of a Sentinel-monitored set; ``sentinel_password``:
    the sentinels' own password, if they have one)."""
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "timeout": 5.0,  # longest wait for a free connection
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        "retry_on_error": [ConnectionError, RedisTimeoutError],
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
        "health_check_interval": 10,
    }
    if not url.startswith(SENTINEL_SCHEME):
        return Redis.from_pool(BlockingConnectionPool.from_url(url, **options))
    address = parse_sentinel_url(url)
    # A sentinel that does not answer is skipped at once, for the next (redis-py's default
    # retries each one with backoff); the master's connections have the retries above.
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": 1.0,
        "socket_timeout": 1.0,
        "retry": Retry(NoBackoff(), retries=0),
    }
    if sentinel_password:
        sentinel_options["password"] = sentinel_password
    sentinel = Sentinel(address.sentinels, sentinel_kwargs=sentinel_options)
    return sentinel.master_for(  # type: ignore[no-any-return]
        address.master,
        connection_pool_class=_BlockingSentinelPool,
        db=address.db,
        username=address.username,
        password=address.password,
        check_connection=True,  # a PING on each new connection: a master that answers
        **options,
    )


async def warn_if_not_persistent(redis: Redis) -> None:
    """Warns when the Redis in use keeps nothing on disk: a restart of it then forgets every
    task record and result. Quiet when it cannot tell (CONFIG disabled, Redis not up yet)."""
    try:
        async with asyncio.timeout(2):
            config = {
                **await redis.config_get("appendonly"),
                **await redis.config_get("save"),
            }
    except (RedisError, TimeoutError):  # the built-in one: asyncio.timeout's
        return
    values = {_text(k): _text(v) for k, v in config.items()}
    if values.get("appendonly") == "no" and not values.get("save"):
        logger.warning(
            "this Redis keeps nothing on disk (appendonly no, no save points): a restart of it "
            "forgets every task record and result; run it with --appendonly yes"
        )


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")
