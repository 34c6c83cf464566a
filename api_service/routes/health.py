"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from redis.exceptions import RedisError

from api_service.responses import JSONResponse
from api_service.state import Gateway, gateway

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="The broker and Redis are reachable")
async def readyz(gw: Annotated[Gateway, Depends(gateway)]) -> JSONResponse:
    try:
        redis_ok = bool(await gw.redis.ping())
    except (RedisError, OSError):
        redis_ok = False
    checks = {"broker": gw.publisher.is_ready, "redis": redis_ok}
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
