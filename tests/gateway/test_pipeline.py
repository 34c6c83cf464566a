"""The pipeline end to end: real gateway and worker processes, real RabbitMQ and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import numpy as np
import pytest
from sklearn.datasets import load_digits

from proto import models_pb2
from tests.stack import Stack, wait_until


def _session(stack: Stack) -> aiohttp.ClientSession:
    # aiohttp, not httpx, for the concurrent tests: a fraction of the client CPU.
    return aiohttp.ClientSession(stack.url, connector=aiohttp.TCPConnector(limit=64))


@pytest.fixture
def client(shared_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_stack.url, timeout=30) as client:
        yield client


def test_seed_example_succeeds(client: httpx.Client) -> None:
    response = client.post(
        "/predict/model_a",
        headers={"Content-Type": "application/json"},
        content='{"data": "example"}',
    )
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "queued" and accepted["model"] == "model_a"
    assert response.headers["Location"] == f"/tasks/{accepted['task_id']}"

    task = client.get(response.headers["Location"], params={"wait": 10}).json()
    assert task["status"] == "succeeded", task
    assert task["result"] == {"reply": "Processed message: example"}
    assert task["created_at"] <= task["started_at"] <= task["finished_at"]
    assert task["worker_id"]


def test_wait_answers_the_finished_task(client: httpx.Client) -> None:
    response = client.post("/predict/model_a", params={"wait": 10}, json={"data": "hi"})
    assert response.status_code == 200
    assert response.json()["result"] == {"reply": "Processed message: hi"}


def test_protobuf_body(client: httpx.Client) -> None:
    digits = load_digits()
    request = models_pb2.ModelBRequest(pixels=(digits.data[0] / 16).tolist())
    response = client.post(
        "/predict/model_b",
        params={"wait": 10},
        content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["label"] == digits.target[0]
    assert len(result["probabilities"]) == 10
    assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-3)


async def test_model_b_is_accurate_through_the_api(shared_stack: Stack) -> None:
    digits = load_digits()
    pixels = (digits.data / 16.0).tolist()

    async def classify(session: aiohttp.ClientSession, row: list[float]) -> int:
        async with session.post("/predict/model_b", params={"wait": 30}, json={"pixels": row}) as r:
            assert r.status == 200, await r.text()
            return int((await r.json())["result"]["label"])

    async with _session(shared_stack) as session:
        labels = await asyncio.gather(*(classify(session, row) for row in pixels))
    accuracy = float(np.mean(np.array(labels) == digits.target))
    assert accuracy >= 0.95, accuracy


async def test_a_thousand_concurrent_tasks_all_succeed(shared_stack: Stack) -> None:
    async def submit(session: aiohttp.ClientSession, i: int) -> str:
        async with session.post("/predict/model_a", json={"data": f"n{i}"}) as response:
            assert response.status == 202, await response.text()
            return str((await response.json())["task_id"])

    async def result(session: aiohttp.ClientSession, task_id: str) -> dict[str, Any]:
        async with session.get(f"/tasks/{task_id}", params={"wait": 30}) as response:
            return await response.json()  # type: ignore[no-any-return]

    async with _session(shared_stack) as session:
        ids = await asyncio.gather(*(submit(session, i) for i in range(1000)))
        assert len(set(ids)) == 1000
        tasks = await asyncio.gather(*(result(session, task_id) for task_id in ids))
    failed = [t for t in tasks if t["status"] != "succeeded"]
    assert not failed, failed[:3]
    assert sorted(t["result"]["reply"] for t in tasks) == sorted(
        f"Processed message: n{i}" for i in range(1000)
    )


def test_model_error_fails_the_task_with_its_message(client: httpx.Client) -> None:
    response = client.post("/predict/model_b", params={"wait": 10}, json={"pixels": [0.5] * 63})
    task = response.json()
    assert task["status"] == "failed"
    assert task["error"] == {"type": "ValueError", "message": "pixels must hold 64 values, got 63"}


def test_unknown_model_is_404(client: httpx.Client) -> None:
    response = client.post("/predict/no_such_model", json={"data": "x"})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "ModelNotFound"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"pixels": "abc"}', "pixels"),
        ('{"pixls": [0.1]}', "pixls"),
        ('{"pixels": [0.1, "x"]}', "pixels"),
    ],
)
def test_body_not_matching_the_message_is_422_naming_the_field(
    client: httpx.Client, body: str, field: str
) -> None:
    response = client.post(
        "/predict/model_b", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "InvalidRequest"
    assert field in error["message"]


def test_malformed_bodies_are_4xx(client: httpx.Client, shared_stack: Stack) -> None:
    assert client.post("/predict/model_a", content=b"{not json").status_code == 422
    assert (
        client.post(
            "/predict/model_a",
            content=b"\xff\xfe",
            headers={"Content-Type": "application/x-protobuf"},
        ).status_code
        == 422
    )
    wrong_type = client.post(
        "/predict/model_a", content=b"data=x", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    assert "application/json" in wrong_type.json()["error"]["message"]
    too_big = client.post("/predict/model_a", json={"data": "x" * 2_000_000})
    assert too_big.status_code == 413
    assert (
        client.post("/predict/model_a", params={"wait": 99}, json={"data": "x"}).status_code == 422
    )


def test_unknown_task_is_404(client: httpx.Client) -> None:
    assert client.get("/tasks/" + "0" * 32).status_code == 404
    assert client.get("/tasks/not-a-task-id").status_code == 404


def test_models_are_listed_with_schemas(client: httpx.Client) -> None:
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert {"model_a", "model_b"} <= set(models)
    model_b = client.get("/models/model_b").json()
    # (Its queue depth is whatever other tests left; the next test checks that in a queue of
    # its own.)
    assert model_b["live_workers"] == 1
    assert model_b["request_schema"]["properties"]["pixels"]["type"] == "array"
    assert "label" in model_b["response_schema"]["properties"]
    assert client.get("/models/nope").status_code == 404


def test_queue_depth_counts_the_tasks_waiting_in_the_queue(stack: Stack) -> None:
    """The depth /models shows is the number of the model's messages no worker holds yet."""
    stack.start_gateway()
    stack.start_worker("sleep", INFERQ_PREFETCH="1")  # holds one task at a time
    stack.wait_live("sleep")
    with httpx.Client(base_url=stack.url, timeout=30) as client:

        def depth() -> int:
            return int(client.get("/models/sleep").json()["queue_depth"])

        assert depth() == 0  # a namespace of the test's own: nothing queued yet
        busy = client.post("/predict/sleep", json={"ms": 3000}).json()["task_id"]
        wait_until(
            lambda: client.get(f"/tasks/{busy}").json()["status"] == "running", 10, "it to run"
        )
        # Posted one by one, so each is a message of its own; the worker holds only `busy`.
        waiting = [client.post("/predict/sleep", json={"ms": 1}).json()["task_id"] for _ in "abc"]
        assert depth() == len(waiting)
        for task_id in [busy, *waiting]:
            task = client.get(f"/tasks/{task_id}", params={"wait": 10}).json()
            assert task["status"] == "succeeded", task
        assert depth() == 0


def test_health_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["checks"] == {"broker": True, "redis": True}
    assert client.get("/docs").status_code == 200
    assert "/predict/{model}" in client.get("/openapi.json").json()["paths"]
