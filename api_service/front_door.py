"""The gateway's one HTTP front door: every request passes here once.

Here, for every route alike: the caller's trace context is continued (and named in the
answer's ``traceparent``), the authentication hook runs, a body is read under the time and size
limits (`api_service.request_body`), errors become their JSON answer
(`api_service.errors.error_response`), and the request is counted, timed and, if asked,
logged. Then the two calls clients make by the thousand, ``POST /predict/{model}`` and
``GET /tasks/{id}``, go to their handlers in `api_service.routes.hot`; the rest goes to the
FastAPI app (the cold routes and the OpenAPI document). No route is routed or parsed twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from api_service.core.gateway import Caller, Gateway
from api_service.errors import error_response
from api_service.metrics import record_request
from api_service.request_body import BodyClock, RequestBody, has_body
from api_service.routes import hot
from inferq.settings import GatewaySettings
from inferq.tracing import server_span

logger = logging.getLogger("api_service.access")

#: Finds who calls from a request's scope and headers; None for an anonymous caller. Raises an
#: `inferq.errors.InferqError` to refuse the request.
Authenticate = Callable[[Scope, dict[str, str]], Awaitable[Caller | None]]


async def anyone(scope: Scope, headers: dict[str, str]) -> Caller | None:
    """The authentication hook until API keys exist: everyone may call, anonymously."""
    return None


class FrontDoor:
    def __init__(
        self, app: FastAPI, settings: GatewaySettings, authenticate: Authenticate = anyone
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.bodies = BodyClock(settings.body_timeout_s)
        self.max_body_bytes = settings.max_body_bytes
        self.access_log = settings.gateway_access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":  # lifespan: the FastAPI app opens the gateway core
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        route = hot.match(method, path)
        # ASGI header names are lower case; a plain dict reads faster than Headers.
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        body = RequestBody(receive, self.bodies) if has_body(scope["headers"]) else None
        template = route.template if route else ""
        with server_span(f"{method} {template}" if template else method, headers) as span:
            traceparent = (b"traceparent", span.trace_context["traceparent"].encode())
            response: Response | None = None
            fastapi: _Answer | None = None
            try:
                caller = await self.authenticate(scope, headers)
                if route is not None:
                    request = hot.HttpRequest(
                        scope,
                        route.param,
                        headers,
                        body,
                        self.max_body_bytes,
                        span.trace_context,
                        caller,
                    )
                    response = await route.handler(self.gateway, request)
                else:
                    scope.setdefault("state", {})["caller"] = caller
                    fastapi = _Answer(send, body, traceparent)
                    await self.app(scope, body.receive if body else receive, fastapi.send)
            except Exception as error:  # noqa: BLE001 - every error gets its JSON answer
                if fastapi is not None and fastapi.status:  # its answer had begun: log it
                    logger.error("error once answering %s %s", method, path, exc_info=error)
                else:
                    response = error_response(error, method, path)
            if response is not None:
                response.raw_headers.append(traceparent)
                # An answer given before the body was read lingers to read the rest.
                out = send if body is None or body.complete else body.lingering(send)
                await response(scope, receive, out)
                status = response.status_code
            else:
                status = fastapi.status if fastapi else 500
        if route is None:  # FastAPI matched it: its template, for low-cardinality labels
            template = getattr(scope.get("route"), "path", "unmatched")
        model = scope.get("path_params", {}).get("model", "") if route is None else route.model
        seconds = time.perf_counter() - started
        record_request(template, model, status, seconds)
        if self.access_log or status >= 500:
            self._log(method, path, status, seconds, span.trace_context)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket handshake passes the authentication hook too; a refused one is
        answered with the error's HTTP answer instead of the upgrade. The socket may ask the
        hook again (``state["authenticate"]``): its key may be revoked while it is open."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            caller = await self.authenticate(scope, headers)
        except Exception as error:  # noqa: BLE001 - every error gets its JSON answer
            response = error_response(error, "GET", scope["path"])
            await WebSocket(scope, receive, send).send_denial_response(response)
            return
        state = scope.setdefault("state", {})
        state["caller"] = caller
        state["authenticate"] = lambda: self.authenticate(scope, headers)
        await self.app(scope, receive, send)

    @property
    def gateway(self) -> Gateway:
        return self.app.state.gateway  # type: ignore[no-any-return]

    def _log(
        self, method: str, path: str, status: int, seconds: float, trace: dict[str, str]
    ) -> None:
        duration_ms = round(seconds * 1000, 3)
        logger.info(
            "%s %s %d in %.1f ms",
            method,
            path,
            status,
            duration_ms,
            extra={
                "http_status": status,
                "duration_ms": duration_ms,
                "trace_id": trace["traceparent"][3:35],
            },
        )


class _Answer:
    """The ``send`` of a request FastAPI answers: notes the status, adds the trace header,
    and, for an answer given before the body was read, lingers to read the rest."""

    __slots__ = ("_send", "body", "header", "status")

    def __init__(
        self, send: Send, body: RequestBody | None, header: tuple[bytes, bytes]
    ) -> None:
        self._send = send
        self.body = body
        self.header = header
        self.status = 0

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message = {**message, "headers": [*message.get("headers", ()), self.header]}
            if self.body is not None and not self.body.complete:
                self._send = self.body.lingering(self._send)
        await self._send(message)
