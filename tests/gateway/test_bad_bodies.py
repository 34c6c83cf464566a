"""Bodies a new user's client sends that the gateway must refuse in words, not by cutting the
connection: one over ``INFERQ_MAX_BODY_BYTES`` (413), one that stops arriving (408)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import httpx
import requests

from inferq.settings import GatewaySettings
from tests.stack import Stack

LIMIT = 1_048_576  # the default INFERQ_MAX_BODY_BYTES
BODY = json.dumps({"data": "x" * 5_000_000}).encode()  # 5 MB
JSON = {"Content-Type": "application/json"}

Outcome = tuple[int, dict[str, Any]]


def _pieces(body: bytes) -> Iterator[bytes]:
    """The body as an iterable of unknown length: the clients send it chunked."""
    for start in range(0, len(body), 65_536):
        yield body[start : start + 65_536]


def _urllib(url: str, chunked: bool = False) -> Outcome:
    request = urllib.request.Request(url, data=_pieces(BODY) if chunked else BODY, headers=JSON)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _requests(url: str) -> Outcome:
    answer = requests.post(url, data=BODY, headers=JSON, timeout=30)
    return answer.status_code, answer.json()


def _httpx(url: str, chunked: bool = False) -> Outcome:
    answer = httpx.post(url, content=_pieces(BODY) if chunked else BODY, headers=JSON, timeout=30)
    return answer.status_code, answer.json()


def _aiohttp(url: str) -> Outcome:
    async def post() -> Outcome:
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=BODY, headers=JSON) as answer:
                return answer.status, await answer.json()

    return asyncio.run(post())


CLIENTS: dict[str, Callable[[str], Outcome]] = {
    "urllib": _urllib,
    "requests": _requests,
    "httpx": _httpx,
    "aiohttp": _aiohttp,
    "urllib chunked": lambda url: _urllib(url, chunked=True),
    "httpx chunked": lambda url: _httpx(url, chunked=True),
}


def test_a_body_over_the_limit_reaches_every_common_client_as_413(shared_stack: Stack) -> None:
    """Each client sends 5 MB to a gateway with the default 1 MiB limit and reads the 413
    error: the gateway reads and discards the body it refused before it closes the
    connection (closing with unread data would reset it, and the client lose the answer)."""
    assert GatewaySettings.model_fields["max_body_bytes"].default == LIMIT
    url = f"{shared_stack.url}/predict/model_a"
    seen: dict[str, object] = {}
    for name, client in CLIENTS.items():
        try:
            status, body = client(url)
            error = body["error"]
            seen[name] = (status, error["type"], str(LIMIT) in error["message"])
        except Exception as failure:  # noqa: BLE001 - shown beside the other clients' answers
            seen[name] = repr(failure)
    assert seen == dict.fromkeys(CLIENTS, (413, "BodyTooLarge", True))


def test_an_early_answer_of_a_fastapi_route_reaches_the_client_too(shared_stack: Stack) -> None:
    """The front door lingers for every route: FastAPI's 405 to a 5 MB POST it never reads
    reaches urllib (which closes the connection after the answer) as the 405."""
    status, body = _urllib(f"{shared_stack.url}/models/model_a")
    assert status == 405, body


def _stall(port: int, target: str, first_bytes: bytes) -> socket.socket:
    """A request that promises 100 bytes of body, sends ``first_bytes`` of it, then nothing."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n".encode()
        + first_bytes
    )
    return connection


def _read_to_close(connection: socket.socket, timeout_s: float) -> bytes:
    """All the gateway sends until it closes the connection (socket.timeout if it never does)."""
    connection.settimeout(timeout_s)
    received = b""
    while piece := connection.recv(65_536):
        received += piece
    return received


def test_a_body_that_stops_arriving_gets_408_then_its_connection_closes(stack: Stack) -> None:
    stack.env["INFERQ_BODY_TIMEOUT_S"] = "1"  # the default is 10 s: a quick test, same rule
    stack.start_gateway()
    stack.start_worker("model_a")
    stack.wait_live("model_a")
    port = int(stack.url.rsplit(":", 1)[1])
    started = time.monotonic()
    stalled = {
        "2 of 100 bytes": _stall(port, "/predict/model_a", b'{"'),
        "2 of 100 bytes, waiting": _stall(port, "/predict/model_a?wait=5", b'{"'),
        "no byte of the body": _stall(port, "/predict/model_a", b""),
    }
    # Meanwhile the gateway serves everyone else.
    served = httpx.post(
        f"{stack.url}/predict/model_a", json={"data": "meanwhile"}, params={"wait": 10}, timeout=15
    )
    assert served.status_code == 200, served.text
    assert served.json()["result"] == {"reply": "Processed message: meanwhile"}
    for name, connection in stalled.items():
        with connection:
            answer = _read_to_close(connection, timeout_s=10)
        waited = time.monotonic() - started
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), (name, answer)
        assert b"connection: close" in head.lower(), (name, answer)
        error = json.loads(body)["error"]
        assert error["type"] == "RequestTimeout", (name, error)
        assert "INFERQ_BODY_TIMEOUT_S" in error["message"], (name, error)
        # Not before the timeout; and, on this loaded 2-core machine, well within 5 s.
        assert 1.0 <= waited < 5, (name, waited)
    # Without the test's setting, a stalled body is still bounded.
    assert 0 < GatewaySettings.model_fields["body_timeout_s"].default <= 60
