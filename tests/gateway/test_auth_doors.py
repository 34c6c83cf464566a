"""API keys at the HTTP and WebSocket doors of a real gateway process (``INFERQ_AUTH=on``, keys
made in its SQLite catalog before it started, real model_a, model_b and sleep workers): every
route the app serves, found from the app itself and the served OpenAPI document, answers 401
(JSON, ``WWW-Authenticate``) without a key or with a revoked or malformed one, 403 with a key
lacking its scope, and is served with the right one; the public probes and docs answer anyone.
Then the header spellings a client may use, tasks that belong to their key (404 for any other,
at once even with ``?wait=``), keys limited to some models, the WebSocket handshake and open
sockets, a revocation taking effect within ``INFERQ_KEY_CACHE_S``, and ``INFERQ_AUTH=auto``
without an active key (this machine only; ``inferq gateway --host 0.0.0.0`` refused). The
gRPC door's are in `test_auth_grpc`."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from api_service.app import create_app
from catalog.db import Catalog
from inferq.settings import GatewaySettings
from tests.gateway.keyed import (
    KEY_CACHE_S,
    UNKNOWN_TOKEN,
    Keys,
    bearer,
    key_id,
    keyed_gateway,
    new_key,
)
from tests.stack import Stack, free_port, wait_until

PIXELS = [i / 64 for i in range(64)]
#: What anyone may call (the contract of issue 17): probes, the API's description, the page.
PUBLIC = frozenset(
    {"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/docs", "/openapi.json"}
)
PUBLIC_PAGES = ("/dashboard",)
#: Values for the path parameters of the route templates: nothing a call could change (an
#: unknown model name, key id and task id for the calls that would change or read them).
PATH_VALUES = {
    "model": "model_b",
    "name": "absent",
    "number": "1",
    "version": "1",
    "alias": "live",
    "key_id": "0123456789ab",
    "task_id": "0" * 32,
    "path": "no/such/path",
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Keys]]:
    yield from keyed_gateway(tmp_path_factory, ("model_a", "model_b", "sleep"))


# --- every route -----------------------------------------------------------------------------


def app_routes() -> tuple[set[tuple[str, str]], set[str]]:
    """The (method, template) of every HTTP route of the FastAPI app, and the paths of its
    WebSocket routes, included routers walked (FastAPI keeps them as `_IncludedRouter`)."""
    http: set[tuple[str, str]] = set()
    sockets: set[str] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                walk(included.routes, prefix + route.include_context.prefix)
            elif getattr(route, "methods", None):
                http.update((method, prefix + route.path) for method in route.methods)
            else:
                sockets.add(prefix + route.path)

    walk(create_app(GatewaySettings()).app.routes, "")
    http -= {("HEAD", path) for _, path in http}
    return http, sockets


@pytest.fixture(scope="module")
def routes(gateway: tuple[Stack, Keys]) -> list[tuple[str, str]]:
    """Every HTTP route: the app's, and the served OpenAPI document's (the hot routes the
    front door serves without FastAPI are there); fetched without a key (public)."""
    stack, _ = gateway
    http, sockets = app_routes()
    document = httpx.get(f"{stack.url}/openapi.json", timeout=10)
    assert document.status_code == 200, document.text
    for template, operations in document.json()["paths"].items():
        http.update(
            (m.upper(), template)
            for m in operations
            if m in ("get", "post", "put", "delete", "patch")
        )
    assert sockets == {"/ws"}, "a new WebSocket route: test its handshake below"
    # What clients call most, and each kind of route: the enumeration found them.
    for route in [
        ("POST", "/predict/{model}"),
        ("GET", "/tasks/{task_id}"),
        ("POST", "/v2/models/{model}/infer"),
        ("GET", "/metrics"),
        ("DELETE", "/keys/{key_id}"),
        ("PUT", "/models/{name}/aliases/{alias}"),
        ("GET", "/dashboard"),
    ]:
        assert route in http, route
    return sorted(http)


def expected_scope(method: str, template: str) -> str | None:
    """What a route needs, as the issue's contract says it (None: public)."""
    if template in PUBLIC or template.startswith(PUBLIC_PAGES):
        return None
    if method == "POST" and (template.startswith("/predict/") or template.endswith("/infer")):
        return "predict"
    if template == "/keys" or template.startswith("/keys/"):
        return "admin"
    if method != "GET" and template.startswith("/models/"):
        return "admin"
    return "read"


def path_of(template: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PATH_VALUES[m[1]], template)


def assert_unauthenticated(answer: httpx.Response, what: object) -> None:
    assert answer.status_code == 401, (what, answer.status_code, answer.text)
    assert answer.json()["error"]["type"] == "Unauthenticated", (what, answer.text)
    assert answer.headers["www-authenticate"].startswith("Bearer"), what


def test_every_route_needs_its_scope(
    gateway: tuple[Stack, Keys], routes: list[tuple[str, str]]
) -> None:
    stack, keys = gateway
    with_scope = {"predict": keys.user, "read": keys.reader, "admin": keys.admin}
    without_scope = {"predict": keys.reader, "read": keys.admin, "admin": keys.user}
    checked: dict[str | None, int] = {}
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for method, template in routes:
            path, needed = path_of(template), expected_scope(method, template)
            route = (method, template)
            checked[needed] = checked.get(needed, 0) + 1
            anonymous = client.request(method, path)
            if needed is None:
                assert anonymous.status_code == 200, (route, anonymous.text)
                continue
            assert_unauthenticated(anonymous, route)
            assert_unauthenticated(
                client.request(method, path, headers=bearer(keys.revoked)), route
            )
            refused = client.request(method, path, headers=bearer(without_scope[needed]))
            assert refused.status_code == 403, (route, refused.text)
            assert refused.json()["error"]["type"] == "Forbidden"
            assert needed in refused.json()["error"]["message"]
            served = client.request(method, path, headers=bearer(with_scope[needed]))
            assert served.status_code not in (401, 403), (route, served.text)
            assert served.status_code < 500, (route, served.text)
    assert set(checked) == {None, "predict", "read", "admin"}, checked


def test_a_path_no_route_serves_is_refused_before_it_is_looked_up(
    gateway: tuple[Stack, Keys],
) -> None:
    """Nobody learns which paths exist without a key (nor a public path's neighbours)."""
    stack, keys = gateway
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        for method, path in (
            ("GET", "/no/such/route"),
            ("GET", "/healthz/"),
            ("POST", "/predict/model_b/more"),
            ("GET", "/predict/model_b"),
            ("DELETE", "/models"),
        ):
            assert_unauthenticated(client.request(method, path), (method, path))
            found = client.request(method, path, headers=bearer(keys.user))
            assert found.status_code in (307, 404, 405), (method, path, found.text)
    # A public path's prefix leads nowhere else (sent as written: clients resolve dot segments).
    for target in (
        "/dashboard/../keys",
        "/dashboard/%2e%2e/keys",
        "/dashboard/..%2fkeys",
        "/healthz/../models",
        "/v2/health/live/../../models/model_b/infer",
        "/docs/../keys",
        "/dashboard%2f..%2fkeys",
        "//keys",
        "/./keys",
    ):
        assert raw_status(stack, "X-Nothing: 1", target) in (401, 404), target
        assert raw_status(stack, f"Authorization: Bearer {keys.user}", target) in (403, 404), target


def test_malformed_and_unknown_keys_are_401_never_5xx(
    gateway: tuple[Stack, Keys], routes: list[tuple[str, str]]
) -> None:
    stack, keys = gateway
    user_id = key_id(keys.user)
    tokens = [
        "garbage",
        "",
        "iq_",
        "iq__",
        f"iq_{user_id}",
        f"iq_{user_id}_",
        f"iq_{user_id}_{'A' * 43}",  # a real key id, a wrong secret
        keys.user[:-1] + ("B" if keys.user[-1] != "B" else "C"),
        keys.user + "x",
        keys.user.upper(),
        UNKNOWN_TOKEN,  # an unknown key id
        f"iq_{user_id}_{'A' * 8000}",
        "iq_" + "é" * 20,
        keys.user.replace("_", "-"),
    ]
    guarded = [r for r in routes if expected_scope(*r) is not None]
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for token in tokens:
            for header in ("Authorization", "X-API-Key"):
                value = f"Bearer {token}".rstrip() if header == "Authorization" else token
                for method, template in guarded:
                    raw = {header.encode(): value.encode("utf-8")}
                    answer = client.request(method, path_of(template), headers=raw)
                    assert_unauthenticated(answer, (token[:40], header, method, template))


def test_header_spellings(gateway: tuple[Stack, Keys]) -> None:
    stack, keys = gateway
    token = keys.reader
    for headers in (
        {"authorization": f"bearer {token}"},
        {"AUTHORIZATION": f"BEARER {token}"},
        {"Authorization": f"Bearer   {token}"},
        {"Authorization": f"bEaReR {token}"},
        {"X-API-Key": token},
        {"x-api-key": token},
        {"X-API-KEY": token},
    ):
        answer = httpx.get(f"{stack.url}/models", headers=headers, timeout=10)
        assert answer.status_code == 200, (headers, answer.text)
    # Whitespace around the value, as raw bytes (clients strip it; a proxy may not).
    for line in (
        f"Authorization:   Bearer   {token}  ",
        f"Authorization:\tBearer {token}\t",
        f"x-api-key:  {token} ",
    ):
        assert raw_status(stack, line) == 200, line
    for headers in (
        {"Authorization": "Basic " + "dXNlcjpwYXNzd29yZA=="},
        {"Authorization": f"Basic {token}"},
        {"Authorization": f"Token {token}"},
        {"Authorization": token},
        {"Authorization": "Bearer"},
        {"X-API-Key": ""},
    ):
        assert_unauthenticated(
            httpx.get(f"{stack.url}/models", headers=headers, timeout=10), headers
        )
    for line in (
        "Authorization:   Basic   dXNlcjpwYXNzd29yZA==  ",
        "Authorization: Bearer \xff\xfe",
    ):
        assert raw_status(stack, line) == 401, line


def raw_status(stack: Stack, header_line: str, target: str = "/models") -> int:
    """The status of ``GET target`` sent with ``header_line``, both exactly as written."""
    host, port = stack.url.removeprefix("http://").split(":")
    request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{header_line}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request.encode("latin-1"))
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


# --- tasks and models ------------------------------------------------------------------------


def test_a_task_is_its_keys_only(gateway: tuple[Stack, Keys]) -> None:
    stack, keys = gateway
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        made = client.post(
            "/predict/model_b",
            params={"wait": 10},
            json={"pixels": PIXELS},
            headers=bearer(keys.user),
        )
        assert made.status_code == 200 and made.json()["status"] == "succeeded", made.text
        task_id = made.json()["task_id"]
        mine = client.get(f"/tasks/{task_id}", headers=bearer(keys.user))
        assert mine.status_code == 200 and mine.json()["result"] == made.json()["result"]

        missing_id = "f" * 32
        missing = client.get(f"/tasks/{missing_id}", headers=bearer(keys.other))
        assert missing.status_code == 404
        for token in (keys.other, keys.reader, keys.model_a):
            for params in ({}, {"wait": 0.5}):
                theirs = client.get(f"/tasks/{task_id}", params=params, headers=bearer(token))
                assert theirs.status_code == 404, theirs.text
                assert theirs.json()["error"]["type"] == "TaskNotFound"
                # The same answer as for a task that never existed: nothing tells them apart.
                assert theirs.text.replace(task_id, missing_id) == missing.text
                assert set(theirs.headers) - {"date", "traceparent"} == set(missing.headers) - {
                    "date",
                    "traceparent",
                }
        refused = client.get(f"/tasks/{task_id}", headers=bearer(keys.admin))
        assert refused.status_code == 403  # no read scope: refused before any lookup


def test_waiting_on_another_keys_task_answers_as_for_a_missing_one(
    gateway: tuple[Stack, Keys],
) -> None:
    """``?wait=`` on another key's pending task: 404 at once, as for a task that never
    existed, not once the task ends (the wait would tell that it exists, and when it ends)."""
    stack, keys = gateway
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        made = client.post("/predict/sleep", json={"ms": 3000}, headers=bearer(keys.user))
        assert made.status_code == 202, made.text
        for task_id in ("f" * 32, made.json()["task_id"]):
            started = time.monotonic()
            theirs = client.get(f"/tasks/{task_id}?wait=2", headers=bearer(keys.other))
            assert theirs.status_code == 404, theirs.text
            assert time.monotonic() - started < 1, "it waited for the task"
        pending = client.get(f"/tasks/{made.json()['task_id']}", headers=bearer(keys.user))
        assert pending.json()["status"] in ("queued", "running"), pending.text


def test_an_idempotency_key_is_each_api_keys_own(gateway: tuple[Stack, Keys]) -> None:
    stack, keys = gateway
    idempotency = {"Idempotency-Key": f"auth-doors-{time.time_ns()}"}
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        first, again, theirs = (
            client.post(
                "/predict/model_b",
                params={"wait": 10},
                json={"pixels": PIXELS},
                headers={**bearer(token), **idempotency},
            )
            for token in (keys.user, keys.user, keys.other)
        )
    assert first.status_code == again.status_code == theirs.status_code == 200, theirs.text
    assert first.json()["task_id"] == again.json()["task_id"]
    assert theirs.json()["task_id"] != first.json()["task_id"]


def test_a_key_limited_to_model_a_may_use_no_other(gateway: tuple[Stack, Keys]) -> None:
    stack, keys = gateway
    oip = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": PIXELS}]}
    with httpx.Client(base_url=stack.url, timeout=30, headers=bearer(keys.model_a)) as client:
        for path, body in (
            ("/predict/model_b", {"pixels": PIXELS}),
            ("/predict/model_b@1", {"pixels": PIXELS}),
            ("/v2/models/model_b/infer", oip),
            ("/v2/models/model_b/versions/1/infer", oip),
        ):
            refused = client.post(path, json=body)
            assert refused.status_code == 403, (path, refused.text)
            error = refused.json()["error"]  # the protocol's: a message only
            message = error if path.startswith("/v2/") else error["message"]
            assert "may not use the model 'model_b'" in message, refused.text
        served = client.post("/predict/model_a", params={"wait": 10}, json={"data": "mine"})
        assert served.status_code == 200 and served.json()["status"] == "succeeded", served.text
        # The same bodies with a key for every model are served.
        allowed = httpx.post(
            f"{stack.url}/v2/models/model_b/infer", json=oip, headers=bearer(keys.user), timeout=30
        )
        assert allowed.status_code == 200, allowed.text


# --- WebSocket -------------------------------------------------------------------------------


def ws_url(stack: Stack) -> str:
    return stack.url.replace("http://", "ws://") + "/ws"


async def refused_handshake(stack: Stack, headers: dict[str, str]) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(ws_url(stack), additional_headers=headers):
            pass
    response = refused.value.response
    assert json.loads(response.body)["error"]["type"] in ("Unauthenticated", "Forbidden")
    if response.status_code == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    return response.status_code


async def prediction(socket: ClientConnection, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The last frame of one prediction: its result, or its error."""
    await socket.send(json.dumps({"id": 1, "model": model, "input": body}))
    async with asyncio.timeout(30):
        while True:
            frame: dict[str, Any] = json.loads(await socket.recv())
            if frame["type"] != "accepted":
                return frame


async def test_the_websocket_handshake_needs_a_predict_key(gateway: tuple[Stack, Keys]) -> None:
    stack, keys = gateway
    assert await refused_handshake(stack, {}) == 401
    assert await refused_handshake(stack, bearer(keys.revoked)) == 401
    assert await refused_handshake(stack, bearer(UNKNOWN_TOKEN)) == 401
    assert await refused_handshake(stack, {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}) == 401
    assert await refused_handshake(stack, bearer(keys.reader)) == 403
    assert await refused_handshake(stack, bearer(keys.admin)) == 403
    for headers in (bearer(keys.user), {"x-api-key": keys.user}):
        async with websockets.connect(ws_url(stack), additional_headers=headers) as socket:
            frame = await prediction(socket, "model_b", {"pixels": PIXELS})
        assert frame["type"] == "result" and frame["task"]["status"] == "succeeded", frame
        # The socket's task is its key's: readable with it, not with another.
        async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
            task_path = f"/tasks/{frame['task_id']}"
            assert (await client.get(task_path, headers=bearer(keys.user))).status_code == 200
            assert (await client.get(task_path, headers=bearer(keys.other))).status_code == 404


async def test_a_websocket_keeps_to_its_keys_models(gateway: tuple[Stack, Keys]) -> None:
    stack, keys = gateway
    async with websockets.connect(ws_url(stack), additional_headers=bearer(keys.model_a)) as socket:
        refused = await prediction(socket, "model_b", {"pixels": PIXELS})
        assert refused["type"] == "error" and refused["error"]["type"] == "Forbidden", refused
        served = await prediction(socket, "model_a", {"data": "mine"})
        assert served["type"] == "result" and served["task"]["status"] == "succeeded", served


# --- revocation ------------------------------------------------------------------------------


async def test_a_revoked_key_stops_working_within_the_cache_time(
    gateway: tuple[Stack, Keys],
) -> None:
    stack, keys = gateway
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        token = new_key(stack, keys.admin, "short-lived", ["read", "predict"])
        assert (await client.get("/models", headers=bearer(token))).status_code == 200  # cached
        async with websockets.connect(ws_url(stack), additional_headers=bearer(token)):
            pass
        revoked = await client.delete(f"/keys/{key_id(token)}", headers=bearer(keys.admin))
        assert revoked.status_code == 200 and revoked.json()["active"] is False, revoked.text
        started = time.monotonic()
        while (answer := await client.get("/models", headers=bearer(token))).status_code == 200:
            assert time.monotonic() - started < 3, "the revoked key still works after 3 s"
            await asyncio.sleep(0.05)
        assert_unauthenticated(answer, "revoked")
        assert "revoked" in answer.json()["error"]["message"]
        for _ in range(3):
            assert (await client.get("/models", headers=bearer(token))).status_code == 401
    assert await refused_handshake(stack, bearer(token)) == 401


def test_a_rotated_keys_old_token_stops_working_within_the_cache_time(
    gateway: tuple[Stack, Keys],
) -> None:
    stack, keys = gateway
    old = new_key(stack, keys.admin, "rotated", ["read"])
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        assert client.get("/models", headers=bearer(old)).status_code == 200  # cached
        rotated = client.post(f"/keys/{key_id(old)}/rotate", headers=bearer(keys.admin))
        assert rotated.status_code == 201, rotated.text
        new = rotated.json()["secret"]
        assert client.get("/models", headers=bearer(new)).status_code == 200  # at once
        wait_until(
            lambda: client.get("/models", headers=bearer(old)).status_code == 401,
            3,
            "the old token refused",
        )
        assert client.get("/models", headers=bearer(new)).status_code == 200


async def test_an_open_socket_stops_serving_a_revoked_key(gateway: tuple[Stack, Keys]) -> None:
    """A socket outlives its handshake: its key is checked again for every frame, and a
    revoked one closes it (4401) within the cache time, as it stops working elsewhere."""
    stack, keys = gateway
    token = new_key(stack, keys.admin, "socket-short-lived", ["predict"])
    async with websockets.connect(ws_url(stack), additional_headers=bearer(token)) as socket:
        frame = await prediction(socket, "model_b", {"pixels": PIXELS})
        assert frame["type"] == "result", frame
        async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
            revoked = await client.delete(f"/keys/{key_id(token)}", headers=bearer(keys.admin))
        assert revoked.status_code == 200, revoked.text
        started = time.monotonic()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                frame = await prediction(socket, "model_b", {"pixels": PIXELS})
                assert frame["type"] == "result", frame
                assert time.monotonic() - started < 3, "the revoked key still predicts after 3 s"
                await asyncio.sleep(0.05)
    assert closed.value.rcvd is not None, closed.value
    assert closed.value.rcvd.code == 4401
    assert "revoked" in closed.value.rcvd.reason


# --- INFERQ_AUTH=auto, before any key --------------------------------------------------------


def console() -> str:
    """The ``inferq`` console script, as a user runs it."""
    return str(Path(sys.executable).parent / "inferq")


def test_auto_serves_loopback_until_a_key_exists(stack: Stack) -> None:
    stack.env.update(INFERQ_AUTH="auto", INFERQ_KEY_CACHE_S=str(KEY_CACHE_S))
    stack.start_gateway()
    channel = grpc.insecure_channel(stack.grpc_target)
    server_metadata = channel.unary_unary("/inference.GRPCInferenceService/ServerMetadata")
    with httpx.Client(base_url=stack.url, timeout=10) as client, channel:
        for path in ("/models", "/stats", "/keys"):
            assert client.get(path).status_code == 200, path
        assert server_metadata(b"", timeout=10)  # the gRPC door's client is this machine too
        # The first key can be made by this machine; from then on keys are required.
        made = client.post("/keys", json={"name": "first", "scopes": ["read"]})
        assert made.status_code == 201, made.text
        wait_until(lambda: client.get("/models").status_code == 401, 3, "keys to be required")
        assert client.get("/models", headers=bearer(made.json()["secret"])).status_code == 200
        assert client.get("/keys", headers=bearer(made.json()["secret"])).status_code == 403
        with pytest.raises(grpc.RpcError) as refused:
            server_metadata(b"", timeout=10)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        key = (("x-api-key", made.json()["secret"]),)
        assert server_metadata(b"", metadata=key, timeout=10)


def test_auto_refuses_another_address_without_keys(stack: Stack) -> None:
    env = {k: v for k, v in stack.env.items() if k != "PYTHONPATH"}
    env.update(INFERQ_AUTH="auto", INFERQ_GRPC_PORT=str(free_port()))
    port = str(free_port())
    refused = subprocess.run(
        [console(), "gateway", "--host", "0.0.0.0", "--port", port],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused
    assert "refusing to listen on 0.0.0.0" in refused.stderr, refused.stderr
    assert "inferq keys create" in refused.stderr and "INFERQ_AUTH=off" in refused.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)

    # With auth turned off it serves there (behind the user's own authentication).
    served = stack.spawn_console(
        "gateway-off",
        "gateway",
        "--host",
        "0.0.0.0",
        "--port",
        port,
        INFERQ_AUTH="off",
        INFERQ_GRPC_PORT=str(free_port()),
    )
    url = f"http://127.0.0.1:{port}"
    stack.wait_for(lambda: ready(url), 60, "a gateway on 0.0.0.0", [served])
    assert httpx.get(f"{url}/models", timeout=10).status_code == 200
    served.terminate()
    served.wait(30)  # uvicorn ends by raising the SIGTERM again, once shut down
    assert "Application shutdown complete" in stack.log_of(served)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_auto_with_every_key_revoked_serves_this_machine_only(stack: Stack) -> None:
    """A gateway on 0.0.0.0 (allowed: a key existed when it started) whose last key is
    revoked: clients elsewhere are refused, clients on this machine served without a key."""
    address = own_address()
    with Catalog.open(stack.env["INFERQ_CATALOG_URL"]) as catalog:
        made = catalog.create_key("only", ["read"])
    port, grpc_port = str(free_port()), str(free_port())
    served = stack.spawn_console(
        "gateway-open",
        "gateway",
        "--host",
        "0.0.0.0",
        "--port",
        port,
        INFERQ_AUTH="auto",
        INFERQ_KEY_CACHE_S=str(KEY_CACHE_S),
        INFERQ_GRPC_PORT=grpc_port,
    )
    here, there = f"http://127.0.0.1:{port}", f"http://{address}:{port}"
    stack.wait_for(lambda: ready(here), 60, "a gateway on 0.0.0.0", [served])
    with httpx.Client(timeout=10, trust_env=False) as client:  # no proxy: this machine's
        assert_unauthenticated(client.get(f"{there}/models"), "a key exists")
        assert_unauthenticated(client.get(f"{here}/models"), "a key exists")
        assert client.get(f"{there}/models", headers=bearer(made.secret)).status_code == 200
        assert client.get(f"{there}/healthz").status_code == 200
        with Catalog.open(stack.env["INFERQ_CATALOG_URL"]) as catalog:
            catalog.revoke_key(made.key.key_id)
        wait_until(
            lambda: client.get(f"{here}/models").status_code == 200, 3, "loopback served again"
        )
        refused = client.get(f"{there}/models")
        assert_unauthenticated(refused, "no key left")
        assert "no API key exists yet" in refused.json()["error"]["message"]
        assert_unauthenticated(client.get(f"{there}/models", headers=bearer(made.secret)), "gone")
    method = "/inference.GRPCInferenceService/ServerMetadata"
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        assert channel.unary_unary(method)(b"", timeout=10)
    direct = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(f"{address}:{grpc_port}", options=direct) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            channel.unary_unary(method)(b"", timeout=10)
        assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    served.terminate()
    served.wait(30)


def own_address() -> str:
    """This machine's address on its network (not loopback); the test is skipped without."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: it only picks the route
        except OSError:
            pytest.skip("no network address besides loopback")
        address: str = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("no network address besides loopback")
    return address
