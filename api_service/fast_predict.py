"""The hot path: ``POST /predict/{model}`` served in front of FastAPI.

FastAPI's routing, dependency solving and middleware stack cost the gateway about as much CPU
per prediction as the whole of its own work (py-spy, load_testing/README.md). This ASGI app
takes the predictions it fully understands (a model name, at most ``wait`` and ``timeout`` in
the query, as numbers in range) straight to `answer_prediction`, with the same metrics and
error answers as the FastAPI app; everything else goes to the FastAPI app, whose route
documents the call and words the errors of unusual query strings.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from api_service.errors import error_response
from api_service.metrics import REQUEST_SECONDS, REQUESTS
from api_service.routes.predict import MAX_DEADLINE_S, MAX_WAIT_S, answer_prediction
from inferq.errors import ModelNotFound

PREFIX = "/predict/"
ROUTE = "/predict/{model}"


class FastPredict:
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and scope["method"] == "POST" and path.startswith(PREFIX):
            model = path[len(PREFIX) :]
            query = _query(scope["query_string"])
            if model and "/" not in model and query is not None:
                await self._predict(scope, receive, send, model, *query)
                return
        await self.app(scope, receive, send)

    async def _predict(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        model: str,
        wait: float,
        deadline_s: float | None,
    ) -> None:
        started = time.perf_counter()
        try:
            gateway = self.app.state.gateway
            headers = Headers(scope=scope)
            response = await answer_prediction(
                gateway, model, headers, _body(receive), wait, deadline_s
            )
        except Exception as error:  # noqa: BLE001 - every error gets its JSON answer
            response = error_response(error, "POST", scope["path"])
            # Unknown models are not labels: a client could otherwise make endless series.
            if isinstance(error, ModelNotFound):
                model = ""
        await response(scope, receive, send)
        REQUESTS.labels(ROUTE, model, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(ROUTE, model).observe(time.perf_counter() - started)


def _query(raw: bytes) -> tuple[float, float | None] | None:
    """``(wait, timeout)`` from a query string, or None if it holds anything else, or a value
    that is not a number in range (FastAPI then answers, with its wording of the error)."""
    wait, deadline_s = 0.0, None
    if not raw:
        return wait, deadline_s
    try:
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            number = float(value)
            if name == "wait" and 0 <= number <= MAX_WAIT_S:
                wait = number
            elif name == "timeout" and 0 < number <= MAX_DEADLINE_S:
                deadline_s = number
            else:
                return None
    except ValueError:
        return None
    return wait, deadline_s


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return
