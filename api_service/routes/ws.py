"""``/ws``: many predictions over one WebSocket, each answered as its task ends.

A client sends one frame per prediction and reads the answers in the order the tasks end:

- text frame: ``{"id": <client's: a string or an integer>, "model": "name[@3|@alias]",
  "input": {<the model's request message as JSON>}, "timeout"?: <deadline in seconds>}``;
- binary frame (protobuf bodies): a 4-byte big-endian length N, then N bytes of the same JSON
  header without ``input``, then the model's request message as binary protobuf.

Each prediction is answered ``{"type": "accepted", "id", "task_id"}`` once the broker holds the
task, then ``{"type": "result", "id", "task_id", "task": <the task view, as GET /tasks/{id}>}``
when it ends (``succeeded``, ``failed`` or ``expired``); or, if it is refused,
``{"type": "error", "id", "error": {"type", "message", ...}}``, the same error as the HTTP
answer (`inferq.errors.websocket_frame`). A frame that cannot be read as a request (not JSON,
not an object, no usable id) gets an error frame with ``"id": null``; so does a frame beyond
``INFERQ_WS_MAX_IN_FLIGHT`` unanswered ones (``TooManyInFlight``), and one reusing the id of an
unanswered one. The socket stays open for all of these.

Errors that end the socket close it with 4000 + the error's HTTP status
(`inferq.errors.websocket_close`): 4413 for a frame over ``INFERQ_MAX_BODY_BYTES``, 4422 after
`MAX_UNREADABLE` unreadable frames in a row (protocol abuse); a refused caller gets the HTTP
error answer to its handshake (`api_service.front_door`), and the handshake's key is checked
again for each frame (a cached lookup), so a key revoked while its socket is open closes it
with 4401 within ``INFERQ_KEY_CACHE_S``. Tasks still unanswered when the client goes away
stay queued and end as usual; only their waiting here stops. Each prediction is a server span
continuing the handshake's ``traceparent`` and is counted as a request of the ``websocket``
door.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected

from api_service.core.gateway import Caller, Gateway, PredictRequest
from api_service.metrics import record_request
from inferq.errors import (
    BodyTooLarge,
    Forbidden,
    InferqError,
    InvalidRequest,
    StoreUnavailable,
    TooManyInFlight,
    Unauthenticated,
    websocket_close,
    websocket_frame,
)
from inferq.tracing import server_span

logger = logging.getLogger(__name__)

router = APIRouter()

ROUTE = "/ws"
#: Unreadable frames in a row after which the socket is closed (4422).
MAX_UNREADABLE = 8
_HEADER_LENGTH = 4


@router.websocket(ROUTE)
async def predictions(websocket: WebSocket) -> None:
    await websocket.accept()
    await PredictionSocket(websocket, websocket.app.state.gateway).serve()


class PredictionSocket:
    """One client's socket: reads frames, submits each through the core, answers each."""

    def __init__(self, websocket: WebSocket, gateway: Gateway) -> None:
        self.websocket = websocket
        self.gateway = gateway
        state = websocket.scope.get("state", {})
        self.caller = state.get("caller")
        self._authenticate: Callable[[], Awaitable[Caller | None]] | None = state.get(
            "authenticate"
        )
        self.headers = {k: v for k, v in websocket.headers.items() if k == "traceparent"}
        self.max_in_flight = gateway.settings.ws_max_in_flight
        self.max_frame_bytes = gateway.settings.max_body_bytes
        self.in_flight: dict[Any, asyncio.Task[None]] = {}  # by the client's id
        self._send_lock = asyncio.Lock()
        self._unreadable = 0

    async def serve(self) -> None:
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if await self._on_frame(message) is False:
                    return
        except (WebSocketDisconnect, WebSocketDisconnected):  # gone while answered
            return
        finally:
            for task in self.in_flight.values():
                task.cancel()
            await asyncio.gather(*self.in_flight.values(), return_exceptions=True)

    async def _on_frame(self, message: Mapping[str, Any]) -> bool:
        """Handles one frame; False once it closed the socket."""
        if self._authenticate is not None:  # the handshake's key, checked again (cached)
            try:
                self.caller = await self._authenticate()
            except (Unauthenticated, Forbidden) as error:  # revoked since: 4401
                await self._close(error)
                return False
            except InferqError as error:  # the catalog is away: this frame only is refused
                await self._send(websocket_frame(error, None))
                return True
        text, data = message.get("text"), message.get("bytes")
        size = len(data) if data is not None else len(text or "")
        if text is not None and size * 4 > self.max_frame_bytes:  # UTF-8: up to 4 bytes a char
            size = len(text.encode())
        if size > self.max_frame_bytes:
            await self._close(
                BodyTooLarge(
                    f"frame of {size} bytes exceeds the limit of {self.max_frame_bytes} bytes "
                    "(INFERQ_MAX_BODY_BYTES)"
                )
            )
            return False
        try:
            frame = _Frame.read(text, data)
        except InvalidRequest as error:
            self._unreadable += 1
            if self._unreadable >= MAX_UNREADABLE:
                await self._close(InvalidRequest(f"{MAX_UNREADABLE} unreadable frames in a row"))
                return False
            await self._send(websocket_frame(error, None))
            return True
        self._unreadable = 0
        try:
            if frame.id in self.in_flight:
                raise InvalidRequest(f"id {frame.id!r} is already in flight on this socket")
            if len(self.in_flight) >= self.max_in_flight:
                raise TooManyInFlight(
                    f"{self.max_in_flight} predictions are in flight on this socket "
                    "(INFERQ_WS_MAX_IN_FLIGHT); send the next once one is answered",
                    limit=self.max_in_flight,
                )
            request = frame.request(self.caller)
        except InferqError as error:
            await self._send(websocket_frame(error, frame.id))
            return True
        frame_id = frame.id
        task = asyncio.create_task(self._predict(frame_id, request))
        self.in_flight[frame_id] = task
        task.add_done_callback(lambda _: self.in_flight.pop(frame_id, None))
        return True

    async def _predict(self, frame_id: Any, request: PredictRequest) -> None:
        started = time.perf_counter()
        status = 499  # nginx's "client closed": the socket ended first (its tasks run on)
        try:
            # A span per prediction, continuing the trace the handshake named (traceparent).
            with server_span(f"WS {ROUTE}", self.headers, model=request.model) as span:
                request = replace(request, trace_context=span.trace_context)
                status = await self._answer(frame_id, request)
        finally:
            seconds = time.perf_counter() - started
            record_request(ROUTE, request.model, status, seconds, door="websocket")

    async def _answer(self, frame_id: Any, request: PredictRequest) -> int:
        """Submits, answers accepted then the result (or the error); the status to count."""
        status = 200
        try:
            answer = await self.gateway.predict(request)
            await self._send({"type": "accepted", "id": frame_id, "task_id": answer.task_id})
            while not answer.finished:
                answer = await self.gateway.task(
                    answer.task_id, self.gateway.settings.max_wait_s, request.caller
                )
            await self._send(
                {"type": "result", "id": frame_id, "task_id": answer.task_id, "task": answer.view()}
            )
        except (WebSocketDisconnect, WebSocketDisconnected):  # the client went away
            status = 499
        except Exception as error:  # noqa: BLE001 - every error gets its error frame
            error = _known(error)
            status = error.status_code
            with contextlib.suppress(Exception):  # the client may have gone
                await self._send(websocket_frame(error, frame_id))
        return status

    async def _send(self, frame: dict[str, Any]) -> None:
        payload = orjson.dumps(frame, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        async with self._send_lock:
            await self.websocket.send_text(payload)

    async def _close(self, error: InferqError) -> None:
        code = websocket_close(error)
        logger.info("closing a WebSocket with %d: %s", code, error.message)
        with contextlib.suppress(Exception):
            async with self._send_lock:
                await self.websocket.close(code, error.message[:120])  # the reason's limit


@dataclass(frozen=True)
class _Frame:
    """A frame with a usable id: the request it asks for is checked by `request`."""

    id: str | int
    header: dict[str, Any]
    body: bytes
    content_type: str

    @classmethod
    def read(cls, text: str | None, data: bytes | None) -> _Frame:
        """The frame; InvalidRequest if it is not a JSON object (after the binary framing)
        with a usable id."""
        if data is not None:
            length = int.from_bytes(data[:_HEADER_LENGTH], "big")
            if len(data) < _HEADER_LENGTH or _HEADER_LENGTH + length > len(data):
                raise InvalidRequest(
                    "a binary frame is a 4-byte big-endian header length, the JSON header, "
                    "then the request message as binary protobuf"
                )
            header = _json_object(data[_HEADER_LENGTH : _HEADER_LENGTH + length])
            body, content_type = data[_HEADER_LENGTH + length :], "application/x-protobuf"
        else:
            header = _json_object(text or "")
            body, content_type = b"", "application/json"
        frame_id = header.get("id")
        if isinstance(frame_id, bool) or not isinstance(frame_id, str | int):
            raise InvalidRequest('a frame needs an "id": a string or an integer of yours')
        return cls(frame_id, header, body, content_type)

    def request(self, caller: Caller | None) -> PredictRequest:
        model = self.header.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest('a frame needs "model": the name of the model to call')
        timeout = self.header.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float)
        ):
            raise InvalidRequest('"timeout" must be a number of seconds')
        body = self.body
        if self.content_type == "application/json":
            if not isinstance(self.header.get("input"), dict):
                raise InvalidRequest('a text frame needs "input": the request message as JSON')
            body = orjson.dumps(self.header["input"])
        return PredictRequest(
            model=model,
            body=body,
            content_type=self.content_type,
            deadline_s=None if timeout is None else float(timeout),
            caller=caller,
        )


def _json_object(raw: str | bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"a frame is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidRequest("a frame is a JSON object")
    return value


def _known(error: Exception) -> InferqError:
    if isinstance(error, InferqError):
        return error
    if isinstance(error, RedisError):
        logger.warning("Redis failed on a WebSocket prediction: %r", error)
        return StoreUnavailable("the task store is unavailable", 2)
    logger.error("unhandled error on a WebSocket prediction", exc_info=error)
    return InferqError("internal error; see gateway log")
