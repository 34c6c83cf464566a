"""BodyClock and RequestBody alone: what the one shared timer does to a wait for a body that
does not come, and that it leaves every other cancellation alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from starlette.types import Message

from api_service.request_body import BodyClock, RequestBody
from inferq.errors import BodyTimeout


async def never() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_a_body_that_does_not_come_times_out_within_a_quarter_past_the_timeout() -> None:
    body = RequestBody(never, BodyClock(0.2))
    started = time.monotonic()
    with pytest.raises(BodyTimeout, match="INFERQ_BODY_TIMEOUT_S"):
        await body.receive()
    assert 0.2 <= time.monotonic() - started < 0.2 * 1.25 + 0.1
    assert body.timed_out and not body.complete
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    clock = BodyClock(0.2)
    waiting = asyncio.create_task(RequestBody(never, clock).receive())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_body_read_to_its_end_is_complete_and_not_timed() -> None:
    pieces: Iterator[Message] = iter(
        [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"c", "more_body": False},
        ]
    )

    async def receive() -> Message:
        await asyncio.sleep(0)  # the second piece is waited for
        return next(pieces)

    body = RequestBody(receive, BodyClock(0.2))
    assert [piece async for piece in body.chunks()] == [b"ab", b"c"]
    assert body.complete and not body.timed_out
