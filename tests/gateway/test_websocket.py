"""``/ws`` driven by the websockets library against real gateway and worker processes: many
predictions on one socket, an error frame per bad frame, the in-flight limit, close codes,
and a client that goes away mid-flight."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets
from sklearn.datasets import load_digits
from starlette.testclient import TestClient, WebSocketDenialResponse
from websockets.asyncio.client import ClientConnection

from api_service.app import create_app
from inferq.settings import GatewaySettings
from proto import models_pb2
from tests.conftest import make_stack
from tests.gateway.test_front_door import refuse
from tests.stack import Stack


def ws_url(stack: Stack) -> str:
    return stack.url.replace("http://", "ws://") + "/ws"


@pytest.fixture
async def socket(shared_stack: Stack) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(ws_url(shared_stack)) as socket:
        yield socket


async def send(socket: ClientConnection, frame: dict[str, Any]) -> None:
    await socket.send(json.dumps(frame))


async def receive(socket: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(30):
        frame: dict[str, Any] = json.loads(await socket.recv())
    return frame


async def answers(socket: ClientConnection, ids: set[Any]) -> dict[Any, list[dict[str, Any]]]:
    """Every frame until each of ``ids`` has its last one (a result or an error), by id."""
    found: dict[Any, list[dict[str, Any]]] = {}
    pending = set(ids)
    while pending:
        frame = await receive(socket)
        found.setdefault(frame["id"], []).append(frame)
        if frame["type"] in ("result", "error"):
            pending.discard(frame["id"])
    return found


async def test_many_predictions_in_flight_on_one_socket(
    socket: ClientConnection, shared_stack: Stack
) -> None:
    digits = load_digits()
    for i in range(40):
        await send(socket, {"id": f"a{i}", "model": "model_a", "input": {"data": f"m{i}"}})
    for i in range(10):
        pixels = (digits.data[i] / 16).tolist()
        await send(socket, {"id": i, "model": "model_b", "input": {"pixels": pixels}})
    found = await answers(socket, {f"a{i}" for i in range(40)} | set(range(10)))
    for frame_id, frames in found.items():
        accepted, result = frames
        assert accepted["type"] == "accepted" and result["type"] == "result", frames
        assert accepted["task_id"] == result["task_id"] == result["task"]["task_id"]
        assert result["task"]["status"] == "succeeded"
        if isinstance(frame_id, str):
            assert result["task"]["result"] == {"reply": f"Processed message: m{frame_id[1:]}"}
        else:  # the native path's result
            pixels = (digits.data[frame_id] / 16).tolist()
            async with httpx.AsyncClient(base_url=shared_stack.url, timeout=30) as client:
                native = await client.post(
                    "/predict/model_b", params={"wait": 30}, json={"pixels": pixels}
                )
            assert result["task"]["result"] == native.json()["result"]


async def test_each_prediction_is_counted_and_joins_the_handshakes_trace(
    shared_stack: Stack,
) -> None:
    series = {"door": "websocket", "route": "/ws", "model": "model_a"}
    before = shared_stack.metric("inferq_gateway_requests_total", **series, status="200")
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    traceparent = f"00-{trace_id}-b7ad6b7169203331-01"
    url = ws_url(shared_stack)
    async with websockets.connect(url, additional_headers={"traceparent": traceparent}) as socket:
        for i in range(3):
            await send(socket, {"id": i, "model": "model_a", "input": {"data": "counted"}})
        found = await answers(socket, {0, 1, 2})
    after = shared_stack.metric("inferq_gateway_requests_total", **series, status="200")
    assert after == before + 3
    async with httpx.AsyncClient(base_url=shared_stack.url) as client:
        task = (await client.get(f"/tasks/{found[0][-1]['task_id']}")).json()
    assert task["status"] == "succeeded"
    lines = shared_stack.logs(tail=1_000_000).splitlines()  # the worker's line names the trace
    assert any(task["task_id"] in line and trace_id in line for line in lines)


async def test_a_bad_frame_gets_its_error_frame_and_the_socket_goes_on(
    socket: ClientConnection,
) -> None:
    await send(socket, {"id": 1, "model": "no_such_model", "input": {"data": "x"}})
    unknown = await receive(socket)
    assert (unknown["type"], unknown["id"], unknown["error"]["type"]) == (
        "error",
        1,
        "ModelNotFound",
    )
    await send(socket, {"id": 2, "model": "model_a", "input": {"data": 5}})  # not a string
    bad_body = await receive(socket)
    assert (bad_body["id"], bad_body["error"]["type"]) == (2, "InvalidRequest")
    await send(socket, {"id": 3, "model": "model_a"})  # no input
    assert (await receive(socket))["error"]["type"] == "InvalidRequest"
    await send(socket, {"id": 4, "model": "model_a", "input": {"data": "x"}, "timeout": "soon"})
    assert (await receive(socket))["error"]["message"] == '"timeout" must be a number of seconds'
    await socket.send("{not json")
    bad_json = await receive(socket)
    assert (bad_json["type"], bad_json["id"], bad_json["error"]["type"]) == (
        "error",
        None,
        "InvalidRequest",
    )
    await socket.send('["an", "array"]')
    assert (await receive(socket))["id"] is None
    await send(socket, {"model": "model_a", "input": {"data": "x"}})  # no id
    assert (await receive(socket))["id"] is None
    await send(socket, {"id": 5, "model": "model_a", "input": {"data": "still here"}})
    [accepted, result] = (await answers(socket, {5}))[5]
    assert result["task"]["result"] == {"reply": "Processed message: still here"}


async def test_a_binary_frame_carries_a_protobuf_body(socket: ClientConnection) -> None:
    digits = load_digits()
    header = json.dumps({"id": "p", "model": "model_b"}).encode()
    body = models_pb2.ModelBRequest(pixels=(digits.data[3] / 16).tolist()).SerializeToString()
    await socket.send(len(header).to_bytes(4, "big") + header + body)
    [_, result] = (await answers(socket, {"p"}))["p"]
    assert result["task"]["status"] == "succeeded"
    assert len(result["task"]["result"]["probabilities"]) == 10
    await socket.send((1000).to_bytes(4, "big") + header)  # a header length that lies
    lied = await receive(socket)
    assert (lied["id"], lied["error"]["type"]) == (None, "InvalidRequest")
    await socket.send(len(header).to_bytes(4, "big") + header + b"\xff\xff")  # bad protobuf
    bad = await receive(socket)
    assert (bad["id"], bad["error"]["type"]) == ("p", "InvalidRequest")


async def test_a_frame_over_the_body_limit_closes_the_socket_with_4413(
    socket: ClientConnection,
) -> None:
    await send(socket, {"id": 1, "model": "model_a", "input": {"data": "x" * 2_000_000}})
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await receive(socket)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4413
    assert "INFERQ_MAX_BODY_BYTES" in closed.value.rcvd.reason


async def test_unreadable_frames_in_a_row_close_the_socket_with_4422(
    socket: ClientConnection,
) -> None:
    for _ in range(7):
        await socket.send("nope")
        assert (await receive(socket))["id"] is None
    await socket.send("nope")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await receive(socket)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4422


@pytest.fixture(scope="module")
def limited_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway whose sockets may hold 3 predictions in flight, with the sleep model."""
    for stack in make_stack(tmp_path_factory, INFERQ_WS_MAX_IN_FLIGHT="3"):
        stack.start_gateway()
        stack.start_worker("sleep", INFERQ_CONCURRENCY="8")
        stack.wait_live("sleep")
        yield stack


def sleep_frame(frame_id: Any, ms: int) -> dict[str, Any]:
    return {"id": frame_id, "model": "sleep", "input": {"ms": ms}}


async def test_beyond_the_in_flight_limit_a_frame_gets_an_error_frame(
    limited_stack: Stack,
) -> None:
    async with websockets.connect(ws_url(limited_stack)) as socket:
        for i in range(3):
            await send(socket, sleep_frame(i, 1500))
        await send(socket, sleep_frame(3, 10))
        await send(socket, sleep_frame(0, 10))  # an id in flight
        found = await answers(socket, {0, 1, 2, 3})
        [refused] = found[3]
        assert refused["error"]["type"] == "TooManyInFlight" and refused["error"]["limit"] == 3
        assert "INFERQ_WS_MAX_IN_FLIGHT" in refused["error"]["message"]
        assert found[0][0]["error"]["message"] == "id 0 is already in flight on this socket"
        assert all(found[i][-1]["task"]["status"] == "succeeded" for i in range(3))
        await send(socket, sleep_frame(3, 10))  # answered: room again
        assert (await answers(socket, {3}))[3][-1]["task"]["result"] == {"slept_ms": 10}


async def test_a_client_that_goes_away_mid_flight_leaves_the_gateway_healthy(
    limited_stack: Stack,
) -> None:
    async with websockets.connect(ws_url(limited_stack)) as socket:
        for i in range(3):
            await send(socket, sleep_frame(i, 1000))
        accepted = [await receive(socket) for _ in range(3)]
    # Gone before any ended: the tasks end all the same, and the gateway serves on.
    async with httpx.AsyncClient(base_url=limited_stack.url, timeout=30) as client:
        for frame in accepted:
            task = (await client.get(f"/tasks/{frame['task_id']}", params={"wait": 10})).json()
            assert task["status"] == "succeeded", task
        assert (await client.get("/readyz")).status_code == 200
    for _ in range(5):  # gone while its answers are being sent
        async with websockets.connect(ws_url(limited_stack)) as socket:
            for i in range(3):
                await send(socket, sleep_frame(i, 0))
    async with websockets.connect(ws_url(limited_stack)) as socket:
        for i in range(3):  # the limit is the new socket's own
            await send(socket, sleep_frame(i, 10))
        found = await answers(socket, {0, 1, 2})
        assert all(frames[-1]["type"] == "result" for frames in found.values())
    assert "Traceback" not in limited_stack.logs()


def test_the_authentication_hook_guards_the_websocket_too() -> None:
    # In-process: the hook refuses before the route needs the gateway core.
    app = create_app(GatewaySettings(namespace="test-ws-auth"), authenticate=refuse)
    with pytest.raises(WebSocketDenialResponse) as refused:
        with TestClient(app).websocket_connect("/ws"):
            pass
    assert refused.value.status_code == 401
    assert refused.value.json() == {"error": {"type": "Unauthorized", "message": "send a key"}}
