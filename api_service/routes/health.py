"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api_service.core.gateway import Gateway
from api_service.responses import JSONResponse
from api_service.state import gateway

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="The broker and Redis are reachable")
async def readyz(gw: Annotated[Gateway, Depends(gateway)]) -> JSONResponse:
    checks = await gw.readiness()
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
