"""The gateway's live connections and services, built at startup and passed to the routes
through ``app.state`` — no module-level globals, so each test builds its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from redis.asyncio import Redis

from api_service.broker import TaskPublisher
from api_service.catalog import ModelCatalog
from api_service.recent import RecentLatency
from api_service.submission import TaskSubmitter
from api_service.waiter import TaskWaiter
from inferq.names import Names
from inferq.settings import GatewaySettings
from inferq.tasks.store import TaskStore


@dataclass
class Gateway:
    settings: GatewaySettings
    names: Names
    redis: Redis
    store: TaskStore
    catalog: ModelCatalog
    publisher: TaskPublisher
    waiter: TaskWaiter
    submitter: TaskSubmitter
    recent: RecentLatency = field(default_factory=RecentLatency)


async def gateway(request: Request) -> Gateway:
    """FastAPI dependency: the gateway this request runs in (async: FastAPI would run a
    plain function in a thread pool, on every request)."""
    return request.app.state.gateway  # type: ignore[no-any-return]
