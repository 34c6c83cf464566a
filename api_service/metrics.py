"""Prometheus metrics of the gateway, served at GET /metrics."""

from __future__ import annotations

import functools

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.responses import Response

REQUESTS = Counter(
    "inferq_gateway_requests_total",
    "Requests answered, by door: http (status: the HTTP status), grpc (route: the method, "
    "status: the gRPC status code's name) or websocket (one per prediction; status: the HTTP "
    "status of its error, 499 if the client left first)",
    ["door", "route", "model", "status"],
)
REQUEST_SECONDS = Histogram(
    "inferq_gateway_request_seconds",
    "Time to answer a request (a ?wait= request includes its wait)",
    ["door", "route", "model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
KEY_REQUESTS = Counter(
    "inferq_key_requests_total",
    "Requests by API key (key: its name; at most MAX_KEY_LABELS names per gateway process, "
    'the rest count as "other") and what became of them: admitted, rate_limited, '
    "in_flight_limited, unauthenticated or forbidden",
    ["key", "outcome"],
)
#: The most key names a gateway process uses as labels: keys are made by API calls, and each
#: name makes series of its own.
MAX_KEY_LABELS = 100
KEY_OUTCOMES = frozenset(
    ("admitted", "rate_limited", "in_flight_limited", "unauthenticated", "forbidden")
)

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def record_request(
    route: str, model: str, status: int | str, seconds: float, door: str = "http"
) -> None:
    """Counts and times one answered request."""
    # Unknown models are not labels: a client could otherwise make endless series.
    known = status != 404 and status != "NOT_FOUND"
    count, timing = _request_series(door, route, model if known else "", status)
    count.inc()
    timing.observe(seconds)


@functools.lru_cache(maxsize=1024)
def _request_series(
    door: str, route: str, model: str, status: int | str
) -> tuple[Counter, Histogram]:
    """The labelled series of a (door, route, model, status), looked up once: ``labels()``
    takes a lock and builds a key on every call."""
    return (
        REQUESTS.labels(door, route, model, str(status)),
        REQUEST_SECONDS.labels(door, route, model),
    )


def record_key_request(key_name: str, outcome: str) -> None:
    """Counts one request of the key named ``key_name`` ("" where no key was found) with its
    ``outcome``, one of `KEY_OUTCOMES`."""
    if outcome not in KEY_OUTCOMES:
        raise ValueError(f"unknown key request outcome {outcome!r}")
    _key_series(_key_label(key_name), outcome).inc()


_key_labels: set[str] = set()


def _key_label(key_name: str) -> str:
    """The key's name, or "other" once `MAX_KEY_LABELS` other names are labels."""
    if key_name in _key_labels:
        return key_name
    if len(_key_labels) >= MAX_KEY_LABELS:
        return "other"
    _key_labels.add(key_name)
    return key_name


@functools.lru_cache(maxsize=1024)
def _key_series(key: str, outcome: str) -> Counter:
    return KEY_REQUESTS.labels(key, outcome)
