"""Prometheus metrics of the gateway, served at GET /metrics."""

from __future__ import annotations

import functools

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.responses import Response

REQUESTS = Counter(
    "inferq_gateway_requests_total", "HTTP requests answered", ["route", "model", "status"]
)
REQUEST_SECONDS = Histogram(
    "inferq_gateway_request_seconds",
    "Time to answer an HTTP request (a ?wait= request includes its wait)",
    ["route", "model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def record_request(route: str, model: str, status: int, seconds: float) -> None:
    """Counts and times one answered request."""
    # Unknown models are not labels: a client could otherwise make endless series.
    count, timing = _request_series(route, model if status != 404 else "", status)
    count.inc()
    timing.observe(seconds)


@functools.lru_cache(maxsize=1024)
def _request_series(route: str, model: str, status: int) -> tuple[Counter, Histogram]:
    """The labelled series of a (route, model, status), looked up once: ``labels()`` takes a
    lock and builds a key on every call."""
    return REQUESTS.labels(route, model, str(status)), REQUEST_SECONDS.labels(route, model)
