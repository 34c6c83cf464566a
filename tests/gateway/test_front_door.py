"""The front door applies its hook, errors, metrics and access log to every route, hot
(served by itself) or cold (FastAPI's) alike. In-process ASGI: the hook refuses before any
route needs the gateway core, so no server is involved."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.types import Scope

from api_service.app import create_app
from api_service.core.gateway import Caller
from inferq.errors import InferqError
from inferq.settings import GatewaySettings

ROUTES = [
    ("POST", "/predict/model_a"),
    ("GET", "/tasks/" + "0" * 32),
    ("GET", "/models"),
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/no/such/route"),
]


class Unauthorized(InferqError):
    status_code = 401
    error_type = "Unauthorized"


async def refuse(scope: Scope, headers: dict[str, str]) -> Caller | None:
    if headers.get("authorization") != "Bearer let-me-in":
        raise Unauthorized("send a key")
    return Caller("tester")


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_the_authentication_hook_guards_every_route(
    method: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = GatewaySettings(namespace="test-front-door", gateway_access_log=True)
    app = create_app(settings, authenticate=refuse)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        with caplog.at_level(logging.INFO, logger="api_service.access"):
            answer = await client.request(method, path, json={"data": "x"})
    assert answer.status_code == 401, answer.text
    assert answer.json() == {"error": {"type": "Unauthorized", "message": "send a key"}}
    trace_id = answer.headers["traceparent"].split("-")[1]
    [line] = [r for r in caplog.records if r.name == "api_service.access"]
    assert line.getMessage().startswith(f"{method} {path} 401 in ")
    assert line.trace_id == trace_id  # type: ignore[attr-defined]
