"""The gateway core without HTTP: `open_gateway` and a worker in this process, on the real
RabbitMQ and Redis, in a namespace of the test's own. What every front door relies on."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api_service.core.gateway import Gateway, PredictRequest, open_gateway
from inferq.errors import InvalidRequest, ModelNotFound, TaskNotFound, UnsupportedMediaType
from inferq.settings import CatalogSettings, GatewaySettings, WorkerSettings
from workers.models.model_a import ModelA
from workers.runtime import Worker


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    namespace = f"test-core-{os.urandom(4).hex()}"
    worker_settings = WorkerSettings(namespace=namespace)
    worker = Worker(ModelA(worker_settings), worker_settings)
    catalog = CatalogSettings(
        catalog_url=f"sqlite:///{tmp_path / 'catalog.db'}", model_store_url=str(tmp_path / "m")
    )
    async with open_gateway(GatewaySettings(namespace=namespace), catalog) as core:
        await worker.start()
        try:
            yield core
        finally:
            await worker.stop()
            await _drop(namespace)


async def _drop(namespace: str) -> None:
    from inferq_cli.admin import drop_namespace  # the suite's own clean-up

    await drop_namespace(GatewaySettings(namespace=namespace), ["model_a"])


def predict(data: str, **fields: object) -> PredictRequest:
    return PredictRequest(model="model_a", body=f'{{"data": "{data}"}}'.encode(), **fields)  # type: ignore[arg-type]


async def test_a_prediction_that_waits_gets_the_final_state(gateway: Gateway) -> None:
    answer = await gateway.predict(predict("core", wait_s=10))
    assert answer.finished
    view = answer.view()
    assert view["status"] == "succeeded"
    assert view["result"] == {"reply": "Processed message: core"}
    assert view["task_id"] == answer.task_id and view["model"] == "model_a"


async def test_a_prediction_that_does_not_wait_is_queued_then_read(gateway: Gateway) -> None:
    answer = await gateway.predict(predict("later"))
    assert answer.state is None
    assert answer.view() == {
        "task_id": answer.task_id,
        "model": "model_a",
        "status": "queued",
        "location": f"/tasks/{answer.task_id}",
    }
    read = await gateway.task(answer.task_id, wait_s=10)
    assert read.finished and read.view()["result"] == {"reply": "Processed message: later"}


async def test_a_binary_protobuf_body_and_the_trace_context_are_carried(gateway: Gateway) -> None:
    from proto import models_pb2

    traceparent = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"
    answer = await gateway.predict(
        PredictRequest(
            model="model_a",
            body=models_pb2.ModelARequest(data="bytes").SerializeToString(),
            content_type="application/x-protobuf",
            wait_s=10,
            trace_context={"traceparent": traceparent},
        )
    )
    assert answer.view()["result"] == {"reply": "Processed message: bytes"}


async def test_an_idempotency_key_returns_the_same_task(gateway: Gateway) -> None:
    first = await gateway.predict(predict("once", idempotency_key="k1", wait_s=10))
    again = await gateway.predict(predict("once", idempotency_key="k1"))
    assert again.task_id == first.task_id
    with pytest.raises(InvalidRequest, match="different request body"):
        await gateway.predict(predict("other", idempotency_key="k1"))


async def test_bad_input_is_refused_with_the_error_a_front_door_maps(gateway: Gateway) -> None:
    with pytest.raises(ModelNotFound):
        await gateway.predict(PredictRequest(model="nope", body=b"{}"))
    with pytest.raises(InvalidRequest, match="ModelARequest"):
        await gateway.predict(PredictRequest(model="model_a", body=b'{"data": 3}'))
    with pytest.raises(UnsupportedMediaType):
        await gateway.predict(PredictRequest(model="model_a", body=b"", content_type="text/csv"))
    with pytest.raises(InvalidRequest, match="wait"):
        await gateway.predict(predict("x", wait_s=31))
    with pytest.raises(InvalidRequest, match="timeout"):
        await gateway.predict(predict("x", deadline_s=0))
    with pytest.raises(TaskNotFound):
        await gateway.task("0" * 32)
    with pytest.raises(TaskNotFound):
        await gateway.task("not-an-id")


async def test_many_predictions_at_once_are_all_answered(gateway: Gateway) -> None:
    calls = (gateway.predict(predict(f"n{i}", wait_s=10)) for i in range(50))
    answers = await asyncio.gather(*calls)
    assert [a.view()["result"]["reply"] for a in answers] == [
        f"Processed message: n{i}" for i in range(50)
    ]
