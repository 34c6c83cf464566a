"""Versions and aliases as clients see them: models uploaded through a real gateway, served by
generic ONNX workers on the real RabbitMQ and Redis. Two versions with different signatures
side by side, each on its own queue; moving an alias under load switches new traffic and loses
no task, moving it back is the rollback; a version with queued tasks cannot be deleted; the
catalog outlives the namespace's Redis keys and the gateway process."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message_factory import GetMessageClass
from onnx import TensorProto, helper, numpy_helper

from inferq.names import Names
from inferq.redis_client import connect_redis
from tests.catalog.test_upload_api import upload
from tests.conftest import make_stack
from tests.models.onnx_graphs import doubler
from tests.stack import Stack


def summer() -> bytes:
    """A model of another signature: s = sum of x, x of shape [batch, 4] in float64."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0)],
        "summer",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", 4])],
        [helper.make_tensor_value_info("s", TensorProto.DOUBLE, ["batch"])],
        [numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``scaler`` v1 (x2) and v2 (x3), same signature; v3 of another (a sum), each with a
    worker; ``scaler@production`` names v1."""
    for stack in make_stack(tmp_path_factory, INFERQ_MODEL_CHANGES="loopback"):
        stack.start_gateway()
        for data in (doubler(2.0), doubler(3.0), summer()):
            assert upload(stack, "scaler", data).status_code == 201
        alias = httpx.put(
            f"{stack.url}/models/scaler/aliases/production", json={"version": 1}, timeout=10
        )
        assert alias.status_code == 200
        workers = [stack.start_worker(f"onnx:scaler@{n}") for n in (1, 2, 3)]
        for n in (1, 2, 3):
            stack.wait_live(f"scaler@{n}", timeout=60, watch=workers)
        yield stack
        # By name: a test forgets the registry, which lists the queues to remove.
        stack.close([f"scaler@{n}" for n in (1, 2, 3)])


def predict(stack: Stack, ref: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{stack.url}/predict/{ref}", params={"wait": 10}, json=body, timeout=20)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_two_signatures_are_served_side_by_side_on_their_own_queues(served: Stack) -> None:
    doubled = predict(served, "scaler@1", {"x": [1.0, 2.0, 3.0]})
    summed = predict(served, "scaler@3", {"x": [1.0, 2.0, 3.0, 4.0]})
    assert doubled["model"] == "scaler@1" and doubled["result"] == {"y": [2.0, 4.0, 6.0]}
    assert summed["model"] == "scaler@3" and summed["result"] == {"s": 10.0}
    latest = predict(served, "scaler", {"x": [1.0, 1.0, 1.0, 1.0]})  # bare name: newest
    assert latest["model"] == "scaler@3"
    wrong = httpx.post(f"{served.url}/predict/scaler@3", json={"x": "nope"}, timeout=10)
    assert wrong.status_code == 422
    queues = {httpx.get(f"{served.url}/models/scaler@{n}").json()["queue"] for n in (1, 2, 3)}
    assert len(queues) == 3


def test_a_protobuf_client_builds_a_generic_versions_messages_from_its_descriptors(
    served: Stack,
) -> None:
    described = httpx.get(f"{served.url}/models/scaler@3", timeout=10).json()
    raw = httpx.get(f"{served.url}/models/scaler@3/descriptor_set", timeout=10)
    assert raw.headers["content-type"] == "application/x-protobuf"
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(raw.content).file:
        pool.Add(file)
    request_class = GetMessageClass(pool.FindMessageTypeByName(described["request_type"]))
    body = request_class(x=[0.5, 1.5, 2.0, 4.0]).SerializeToString()
    answer = httpx.post(
        f"{served.url}/predict/scaler@3",
        params={"wait": 10},
        content=body,
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == {"s": 8.0}


def test_moving_an_alias_under_load_loses_no_task_and_moving_it_back_rolls_back(
    served: Stack,
) -> None:
    async def load() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:

            async def one(i: int) -> str:
                answer = await client.post("/predict/scaler@production", json={"x": [i, 1, 1]})
                assert answer.status_code == 202, answer.text
                return str(answer.json()["task_id"])

            accepted: list[str] = []
            for round_ in range(6):
                accepted += await asyncio.gather(*(one(i) for i in range(50)))
                if round_ == 2:  # half way: the alias moves while tasks are queued
                    moved = await client.put(
                        "/models/scaler/aliases/production", json={"version": 2}
                    )
                    assert moved.status_code == 200
                    await asyncio.sleep(1.5)  # past the gateway's resolution cache
            tasks = []
            for task_id in accepted:
                answer = await client.get(f"/tasks/{task_id}", params={"wait": 20})
                tasks.append(answer.json())
            return tasks

    tasks = asyncio.run(load())
    assert len(tasks) == 300
    assert {t["status"] for t in tasks} == {"succeeded"}
    before, after = tasks[:150], tasks[150:]
    assert {t["model"] for t in before} == {"scaler@1"}
    assert {t["model"] for t in after} == {"scaler@2"}
    assert all(t["result"]["y"][1] == (2.0 if t["model"] == "scaler@1" else 3.0) for t in tasks)
    back = httpx.put(
        f"{served.url}/models/scaler/aliases/production", json={"version": 1}, timeout=10
    )
    assert back.status_code == 200
    served.wait_for(
        lambda: predict(served, "scaler@production", {"x": [1, 1, 1]})["model"] == "scaler@1",
        5,
        "the rollback to scaler@1",
        [],
    )


def test_a_version_that_may_hold_tasks_cannot_be_deleted(served: Stack) -> None:
    url = f"{served.url}/models/scaler/versions/2"
    worker = served.start_worker("onnx:scaler@2")
    served.wait_live("scaler@2", workers=2, timeout=60, watch=[worker])
    pids = _worker_pids(served, "scaler@2")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # still live for a few seconds, running nothing
    accepted = []
    for i in range(20):
        answer = httpx.post(f"{served.url}/predict/scaler@2", json={"x": [i, 0, 0]}, timeout=10)
        assert answer.status_code == 202, answer.text
        accepted.append(answer.json()["task_id"])
    refused = httpx.delete(url, timeout=10)
    assert refused.status_code == 409, refused.text
    assert "2 live worker(s)" in refused.json()["error"]["message"]

    for pid in pids:  # the tasks they held go back to the queue, and nobody serves it
        os.kill(pid, signal.SIGKILL)
    served.wait_for(lambda: served.live_workers("scaler@2") == 0, 30, "no live worker", [])
    refused = httpx.delete(url, timeout=10)
    assert refused.status_code == 409, refused.text
    assert "20 task(s) waiting in its queue" in refused.json()["error"]["message"]

    worker = served.start_worker("onnx:scaler@2")  # finishes them
    for task_id in accepted:
        task = httpx.get(f"{served.url}/tasks/{task_id}", params={"wait": 20}, timeout=30).json()
        assert task["status"] == "succeeded", task
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    served.wait_for(lambda: served.live_workers("scaler@2") == 0, 30, "no live worker", [])
    deleted = httpx.delete(url, timeout=10)
    assert deleted.status_code == 200, deleted.text
    assert httpx.get(url, timeout=10).status_code == 404


def test_the_catalog_outlives_the_registry_and_the_gateway(served: Stack) -> None:
    names = Names(served.namespace)

    async def forget_the_registry() -> None:  # only this namespace's keys: a shared Redis
        redis = connect_redis(served.env.get("INFERQ_REDIS_URL", "redis://127.0.0.1:6379/0"))
        keys = [key async for key in redis.scan_iter(match=names.key_pattern)]
        await redis.delete(*keys)
        await redis.aclose()

    asyncio.run(forget_the_registry())
    catalog = httpx.get(f"{served.url}/catalog", timeout=10).json()
    assert _versions(catalog) == (["scaler@1", "scaler@3"], {"production": 1})
    gateway = served.processes[0]
    gateway.send_signal(signal.SIGTERM)
    gateway.wait(30)
    served.start_gateway()
    again = httpx.get(f"{served.url}/catalog", timeout=10).json()
    assert _versions(again) == _versions(catalog)
    served.wait_live("scaler@1", timeout=30)  # the workers registered again by themselves
    assert predict(served, "scaler@production", {"x": [1, 2, 3]})["result"] == {
        "y": [2.0, 4.0, 6.0]
    }


def _versions(catalog: dict[str, Any]) -> tuple[list[str], dict[str, int]]:
    (scaler,) = catalog["models"]
    return [v["ref"] for v in scaler["versions"]], scaler["aliases"]


def _worker_pids(stack: Stack, served_name: str) -> list[int]:
    workers = httpx.get(f"{stack.url}/models/{served_name}", timeout=10).json()["workers"]
    return [int(w["pid"]) for w in workers]
