"""GET /dashboard, a self-refreshing page of models, workers and queues; GET /stats, the
recent latency behind its latency panel."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from api_service.core.gateway import Gateway
from api_service.responses import JSONResponse
from api_service.state import gateway

router = APIRouter()


@functools.cache
def _page() -> str:
    return (resources.files("api_service") / "static" / "dashboard.html").read_text("utf-8")


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(_page(), headers={"Cache-Control": "no-cache"})


@router.get("/stats", tags=["models"], summary="Recent end-to-end latency per model")
async def stats(gw: Annotated[Gateway, Depends(gateway)]) -> JSONResponse:
    return JSONResponse(
        {
            "window_s": gw.recent.window_s,
            "source": "tasks whose final state this gateway returned",
            "models": gw.recent.snapshot(),
        }
    )
