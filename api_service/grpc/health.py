"""``grpc.health.v1`` on the gateway: the server as a whole (``""``) and each of its gRPC
services SERVING while the broker and Redis answer; each served model (``model_b``,
``digits@1``) SERVING while it also has a live worker. Refreshed from the registry every
`REFRESH_S`; a model gone from the registry reads NOT_SERVING. On drain every name reads
NOT_SERVING for good (`ServingHealth.drain`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from grpc_health.v1 import health, health_pb2

from api_service.core.gateway import Gateway

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
#: The registry's own cache (INFERQ_REGISTRY_CACHE_S) is as fresh.
REFRESH_S = 1.0


class ServingHealth:
    def __init__(self, gateway: Gateway, services: list[str]) -> None:
        self.gateway = gateway
        self.services = ["", *services]  # "": the server as a whole
        self.servicer = health.aio.HealthServicer()
        self._statuses: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()  # answered right from the first call
        self._task = asyncio.create_task(self._run(), name="grpc-health")

    async def refresh(self) -> None:
        """Reads who is live and sets each name's status."""
        try:
            ready = all((await self.gateway.readiness()).values())
            models = {e.record.name: bool(e.workers) for e in await self.gateway.entries()}
        except Exception as error:  # noqa: BLE001 - a store that fails reads as not serving
            logger.warning("gRPC health: cannot read the registry (%s)", error)
            ready, models = False, {}
        statuses = {service: SERVING if ready else NOT_SERVING for service in self.services}
        for name in self._statuses.keys() - statuses.keys():  # models gone from the registry
            statuses[name] = NOT_SERVING
        for name, live in models.items():
            statuses[name] = SERVING if ready and live else NOT_SERVING
        for name, status in statuses.items():
            if self._statuses.get(name) != status:
                await self.servicer.set(name, status)
        self._statuses = statuses

    async def drain(self) -> None:
        """Every name NOT_SERVING from now on: the gateway is shutting down."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.servicer.enter_graceful_shutdown()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            await self.refresh()
