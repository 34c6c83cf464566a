"""How a FastAPI route finds the gateway core: built at startup into ``app.state`` (no
module-level globals, so each test builds its own)."""

from __future__ import annotations

from fastapi import Request

from api_service.core.gateway import Gateway


async def gateway(request: Request) -> Gateway:
    """FastAPI dependency: the gateway core (async: FastAPI would run a plain function in a
    thread pool, on every request)."""
    return request.app.state.gateway  # type: ignore[no-any-return]
