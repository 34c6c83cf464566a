"""Request bodies at the gateway's edge: a body that stops arriving gets 408, and a body the
answer did not need is read and discarded before the connection closes.

uvicorn leaves both to the app. It has no timeout while the app waits for a body, so a
client that stops sending holds its connection for ever: here every wait for a piece of a
body is bounded by ``INFERQ_BODY_TIMEOUT_S`` (nginx's ``client_body_timeout``), then
`BodyTimeout` (408) and the connection closes. And it closes the connection after an answer
when the client asked for that (urllib sends ``Connection: close``) even if the body is still
arriving: closing a socket with unread data makes the kernel send RST, which destroys the
answer (a 413 from the Content-Length, a 404 ...) before the client reads it. Here such an
answer says ``Connection: close`` and, before its last byte is marked sent, the rest of the
body is read and discarded, at most `LINGER_BYTES` for `LINGER_S` (nginx's lingering close).

Answer first, then discard, rather than discard, then answer: a client that waits for
``100 Continue`` before sending a large body then gets its 413 without sending it, where the
first ``receive`` of a discard-first gateway makes uvicorn invite the body (curl, 5 MB to the
1 MiB limit: 0 bytes uploaded, against 5 MB discard-first); clients that send the whole body
before they read (urllib, requests, httpx, aiohttp) are served alike either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from starlette.types import Message, Receive, Send

from inferq.errors import BodyTimeout

LINGER_BYTES = 64 * 1024 * 1024  # 60 MB took 20 ms of the gateway's CPU to discard
LINGER_S = 30.0  # nginx's lingering_time
CLOSE = (b"connection", b"close")
LAST_PIECE: Message = {"type": "http.response.body", "body": b"", "more_body": False}


class BodyClock:
    """Bounds every wait for a piece of a request body, with one timer for all of them.

    A timer per wait would be armed and cancelled on every request, though the first receive
    of a small request almost always finds the whole body there already; instead each wait is
    noted in a dict, and one timer, running while any wait is noted, ticks every quarter of
    the timeout and cancels the waits past it: a stalled body is answered after 1 to 1.25
    times the timeout.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._waiting: dict[asyncio.Task[Any], float] = {}  # task -> when its wait began
        self._expired: dict[asyncio.Task[Any], int] = {}  # task -> its cancels before ours
        self._timer: asyncio.TimerHandle | None = None

    async def receive(self, receive: Receive) -> Message:
        """``receive()``, or `BodyTimeout` if it brings nothing for the timeout."""
        task = asyncio.current_task()
        assert task is not None  # always, in a request
        self._waiting[task] = time.monotonic()
        if self._timer is None:
            self._tick_later()
        try:
            return await receive()
        except asyncio.CancelledError:
            # Ours, unless the task was cancelled by someone else too: then that one wins.
            others = self._expired.pop(task, None)
            if others is None or task.uncancel() > others:
                raise
            raise BodyTimeout(
                f"no part of the request body arrived for {self.timeout_s:g} s "
                "(INFERQ_BODY_TIMEOUT_S)"
            ) from None
        finally:
            del self._waiting[task]

    def _tick_later(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.timeout_s / 4, self._tick)

    def _tick(self) -> None:
        began_by = time.monotonic() - self.timeout_s
        for task, began in self._waiting.items():
            if began <= began_by and task not in self._expired:
                self._expired[task] = task.cancelling()
                task.cancel()
        self._timer = None
        if self._waiting:
            self._tick_later()


class RequestBody:
    """One request's body, read through the clock; knows whether it was read to its end."""

    __slots__ = ("_clock", "_receive", "complete", "timed_out")

    def __init__(self, receive: Receive, clock: BodyClock) -> None:
        self._receive = receive
        self._clock = clock
        self.complete = False  # the last piece came, or the client went away
        self.timed_out = False

    async def receive(self) -> Message:
        """The ASGI ``receive``, bounded by the clock while the body is arriving (after it,
        a receive waits for the client to go away, which may take as long as it likes)."""
        if self.complete:
            return await self._receive()
        try:
            message = await self._clock.receive(self._receive)
        except BodyTimeout:
            self.timed_out = True
            raise
        if not message.get("more_body", False):  # also an http.disconnect
            self.complete = True
        return message

    async def chunks(self) -> AsyncIterator[bytes]:
        while not self.complete:
            message = await self.receive()
            if message["type"] == "http.request":
                yield message.get("body", b"")

    def lingering(self, send: Send) -> Send:
        """``send`` for an answer that may go out before the body was read: then it says
        ``Connection: close``, and its end waits until the rest of the body is discarded."""
        linger = False

        async def send_then_linger(message: Message) -> None:
            nonlocal linger
            if message["type"] == "http.response.start" and not self.complete:
                linger = True
                message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
            elif linger and not message.get("more_body", False):
                await send({**message, "more_body": True})  # the client has all of it now
                await self._discard()
                message = LAST_PIECE
            await send(message)

        return send_then_linger

    async def _discard(self) -> None:
        """Reads and throws away the rest of the body, bounded in bytes and time."""
        left, until = LINGER_BYTES, time.monotonic() + LINGER_S
        with contextlib.suppress(BodyTimeout):  # a stalled client: close on it
            while not (self.complete or self.timed_out) and left > 0 and time.monotonic() < until:
                left -= len((await self.receive()).get("body", b""))


def has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether an ASGI request's headers announce a body."""
    for name, value in headers:
        if name == b"content-length":
            return value != b"0"
        if name == b"transfer-encoding":
            return True
    return False
