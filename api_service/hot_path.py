"""The hot path: ``POST /predict/{model}`` and ``GET /tasks/{task_id}`` served in front of
FastAPI.

FastAPI's routing, dependency solving and middleware stack cost the gateway about as much CPU
per prediction as the whole of its own work (py-spy, load_testing/README.md). This ASGI app
takes the requests it fully understands (a model name or task id, and in the query at most
``wait`` and, for a prediction, ``timeout``, as numbers in range) straight to
`answer_prediction` and `answer_task`, with the same metrics and error answers as the FastAPI
app; everything else goes to the FastAPI app, whose routes document the calls and word the
errors of unusual query strings. Both read bodies through `api_service.request_body`: a
body that stops arriving gets 408, one an answer did not need is discarded before the
connection closes.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from api_service.errors import error_response
from api_service.metrics import record_request
from api_service.request_body import BodyClock, RequestBody, has_body
from api_service.responses import JSONResponse
from api_service.routes.predict import MAX_DEADLINE_S, MAX_WAIT_S, answer_prediction
from api_service.routes.tasks import answer_task
from api_service.state import Gateway

PREDICT, PREDICT_ROUTE = "/predict/", "/predict/{model}"
TASKS, TASKS_ROUTE = "/tasks/", "/tasks/{task_id}"


class HotPath:
    def __init__(self, app: FastAPI, body_timeout_s: float) -> None:
        self.app = app
        self.bodies = BodyClock(body_timeout_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "POST" and path.startswith(PREDICT):
                model = path[len(PREDICT) :]
                query = _query(scope["query_string"], ("wait", "timeout"))
                if model and "/" not in model and query is not None:
                    # ASGI header names are lower case; a plain dict reads faster than Headers.
                    headers = {
                        k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                    }
                    body = RequestBody(receive, self.bodies)
                    answer = answer_prediction(self.gateway, model, headers, body.chunks(), *query)
                    await self._serve(scope, receive, send, PREDICT_ROUTE, answer, model, body)
                    return
            elif method == "GET" and path.startswith(TASKS):
                task_id = path[len(TASKS) :]
                query = _query(scope["query_string"], ("wait",))
                if task_id and "/" not in task_id and query is not None:
                    answer = answer_task(self.gateway, task_id, query[0])
                    await self._serve(scope, receive, send, TASKS_ROUTE, answer, "")
                    return
            if has_body(scope["headers"]):  # FastAPI's routes read it as the hot path does
                body = RequestBody(receive, self.bodies)
                await self.app(scope, body.receive, body.lingering(send))
                return
        await self.app(scope, receive, send)

    @property
    def gateway(self) -> Gateway:
        return self.app.state.gateway  # type: ignore[no-any-return]

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: str,
        answer: Coroutine[Any, Any, JSONResponse],
        model: str,
        body: RequestBody | None = None,
    ) -> None:
        """Sends the answer (or the error's), and counts and times it as the FastAPI app's
        metrics middleware would."""
        started = time.perf_counter()
        try:
            response = await answer
        except Exception as error:  # noqa: BLE001 - every error gets its JSON answer
            response = error_response(error, scope["method"], scope["path"])
        if body is not None and not body.complete:  # answered before the body was read
            send = body.lingering(send)
        await response(scope, receive, send)
        record_request(route, model, response.status_code, time.perf_counter() - started)


def _query(raw: bytes, names: tuple[str, ...]) -> tuple[float, float | None] | None:
    """``(wait, timeout)`` from a query string, or None if it holds anything but ``names``,
    or a value that is not a number in range (FastAPI then answers, with its wording of the
    error)."""
    wait, deadline_s = 0.0, None
    if not raw:
        return wait, deadline_s
    text = raw.decode("latin-1")
    # Plain "wait=2&timeout=30" needs no unquoting; anything escaped takes parse_qsl.
    pairs = (
        [tuple(pair.partition("=")[::2]) for pair in text.split("&")]
        if "%" not in text and "+" not in text
        else parse_qsl(text, keep_blank_values=True)
    )
    try:
        for name, value in pairs:
            number = float(value)
            if name not in names:
                return None
            if name == "wait" and 0 <= number <= MAX_WAIT_S:
                wait = number
            elif name == "timeout" and 0 < number <= MAX_DEADLINE_S:
                deadline_s = number
            else:
                return None
    except ValueError:
        return None
    return wait, deadline_s
