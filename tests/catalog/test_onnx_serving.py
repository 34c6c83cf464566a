"""Any stored ONNX version served with no code (`inferq worker onnx:NAME@REF`): models made in
the test, stored in the catalog and the model store the test's processes use, served by real
worker processes behind a real gateway, on the real RabbitMQ and Redis; the numbers are the
ones ONNX Runtime gives in-process."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import httpx
import numpy as np
import onnxruntime as ort
import pytest

from catalog.db import Catalog
from catalog.files import open_model_files
from catalog.onnx_check import check_model
from catalog.records import Version, VersionMetadata
from inferq.settings import CatalogSettings, WorkerSettings
from tests.catalog.s3_server import S3Server
from tests.catalog.test_files import s3_env
from tests.conftest import make_stack
from tests.models import onnx_graphs
from tests.stack import ROOT, Stack, free_port
from workers.loader import load_model_class, load_onnx_model_class


@dataclass(frozen=True)
class Case:
    """A model, a few requests in JSON, and the same inputs as ONNX Runtime's feeds."""

    make: Callable[[], bytes]
    requests: list[dict[str, Any]]
    feeds: dict[str, np.ndarray]  # type: ignore[type-arg]


DIGITS = ROOT / "workers" / "models" / "weights" / "digits.onnx"
PIXELS = np.random.default_rng(3).random((2, 64), dtype=np.float32)
IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
HOUSES = [(31.0, 2, "Paris"), (64.5, 5, "Lyon"), (22.0, 1, "Rome")]
CASES = {
    "digits": Case(  # model_b's weights, served with no code
        DIGITS.read_bytes,
        [{"pixels": row.tolist()} for row in PIXELS],
        {"pixels": PIXELS},
    ),
    "regressor": Case(
        onnx_graphs.regressor,
        [{"x": [0.5, -1.0, 2.0, 0.0]}, {"x": [1.0, 1.0, 1.0, 1.0]}],
        {"x": np.array([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]], np.float32)},
    ),
    "classifier": Case(
        onnx_graphs.classifier,
        [{"input": row} for row in IRIS],
        {"input": np.array(IRIS, np.float32)},
    ),
    "pipeline": Case(
        onnx_graphs.pipeline,
        [{"age": [a], "rooms": [r], "city": [c]} for a, r, c in HOUSES],
        {
            "age": np.array([[a] for a, _, _ in HOUSES], np.float32),
            "rooms": np.array([[r] for _, r, _ in HOUSES], np.int64),
            "city": np.array([[c] for _, _, c in HOUSES], object),
        },
    ),
    "linear": Case(
        onnx_graphs.linear_graph,
        [{"input_0": [1.0, 2.0, 3.0]}, {"input_0": [0.0, 0.0, 1.0]}],
        {"input:0": np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]], np.float32)},
    ),
    "row-sums": Case(  # a dynamic inner dimension: each request gives its shape
        onnx_graphs.row_sums_graph,
        [{"x": [1.0, 2.0, 3.0], "x_shape": [3]}],
        {"x": np.array([[1.0, 2.0, 3.0]], np.float64)},
    ),
}


def upload(stack: Stack, name: str, data: bytes) -> int:
    """Uploads ``data`` as the next version of ``name`` through the stack's gateway."""
    answer = httpx.post(
        f"{stack.url}/models/{name}/versions",
        files={"file": (f"{name}.onnx", data)},
        data={"description": f"{name}, made by the test"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["version"])


def store_in(settings: CatalogSettings, name: str, data: bytes) -> Version:
    signature = check_model(data, settings)
    key = open_model_files(settings.model_store_url).put(data)
    with Catalog.open(settings.catalog_url) as catalog:
        return catalog.add_version(
            name,
            hashlib.sha256(data).hexdigest(),
            len(data),
            key,
            signature.to_json(),
            VersionMetadata(description=f"{name}, made by the test"),
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway and one generic worker per case, each serving version 1 of its model."""
    for stack in make_stack(tmp_path_factory, INFERQ_MODEL_CHANGES="loopback"):
        stack.start_gateway()
        for name, case in CASES.items():  # uploaded as a user does: through the gateway
            assert upload(stack, name, case.make()) == 1
        workers = [stack.start_worker(f"onnx:{name}@1") for name in CASES]
        for name in CASES:
            stack.wait_live(f"{name}@1", timeout=60, watch=workers)
        yield stack


def expected(case: Case) -> list[dict[str, Any]]:
    """ONNX Runtime's answers, in-process, one dict per request, keyed by ONNX output name."""
    session = ort.InferenceSession(case.make(), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    outputs = session.run(names, case.feeds)
    return [
        {name: out[i] for name, out in zip(names, outputs, strict=True)}
        for i in range(len(case.requests))
    ]


def predict(client: httpx.Client, ref: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/predict/{ref}", params={"wait": 10}, json=body)
    assert response.status_code == 200, response.text
    task = response.json()
    assert task["status"] == "succeeded", task
    return task["result"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", list(CASES))
def test_a_stored_version_predicts_what_onnx_runtime_gives(served: Stack, name: str) -> None:
    case = CASES[name]
    with httpx.Client(base_url=served.url, timeout=30) as client:
        results = [predict(client, f"{name}@1", request) for request in case.requests]
        described = client.get(f"/models/{name}@1").json()
    assert described["description"] == f"{name}, made by the test"
    assert described["version"] == "1" and described["queue"].endswith(f".model.{name}@1")
    assert set(described["request_schema"]["properties"]) == set(case.requests[0])
    for result, wanted in zip(results, expected(case), strict=True):
        fields = {onnx: onnx.replace(":", "_").replace(".", "_") for onnx in wanted}
        assert set(result) >= set(fields.values())
        for onnx_name, value in wanted.items():
            got = result[fields[onnx_name]]
            assert np.allclose(np.asarray(got, dtype=value.dtype).ravel(), value.ravel()), (
                onnx_name,
                got,
                value,
            )


def test_the_classifier_answers_label_and_probabilities(served: Stack) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        result = predict(client, "classifier@1", {"input": IRIS[1]})
    assert result["label"] == "2"  # int64: a string in proto3 JSON
    assert len(result["probabilities"]) == 3
    assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-5)


async def submit_all(stack: Stack, ref: str, bodies: list[dict[str, Any]]) -> list[str]:
    async with aiohttp.ClientSession(stack.url) as session:

        async def submit(body: dict[str, Any]) -> str:
            async with session.post(f"/predict/{ref}", json=body) as response:
                assert response.status == 202, await response.text()
                return str((await response.json())["task_id"])

        return await asyncio.gather(*map(submit, bodies))


async def results(stack: Stack, ids: list[str]) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(stack.url) as session:

        async def result(task_id: str) -> dict[str, Any]:
            async with session.get(f"/tasks/{task_id}", params={"wait": 30}) as response:
                return await response.json()  # type: ignore[no-any-return]

        return await asyncio.gather(*map(result, ids))


def test_requests_in_flight_run_as_batches_with_the_right_answers(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """64 requests queued while the worker is paused: it runs them in batches (its batch-size
    metric says so), and each gets its own row of the outputs."""
    rng = np.random.default_rng(7)
    rows = rng.uniform([4, 2, 1, 0], [8, 4.5, 7, 2.5], size=(64, 4)).astype(np.float32)
    for stack in make_stack(tmp_path_factory, INFERQ_MODEL_CHANGES="loopback"):
        stack.start_gateway()
        assert upload(stack, "iris", onnx_graphs.classifier()) == 1
        port = free_port()
        worker = stack.start_worker("onnx:iris@1", INFERQ_METRICS_PORT=str(port))
        stack.wait_live("iris@1", timeout=60, watch=[worker])
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            ids = asyncio.run(
                submit_all(stack, "iris@1", [{"input": row.tolist()} for row in rows])
            )
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        tasks = asyncio.run(results(stack, ids))
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert [t["status"] for t in tasks] == ["succeeded"] * 64, tasks[:2]
    session = ort.InferenceSession(onnx_graphs.classifier(), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"input": rows})
    assert [int(t["result"]["label"]) for t in tasks] == labels.tolist()
    assert np.allclose([t["result"]["probabilities"] for t in tasks], probabilities, atol=1e-6)
    batches = sample(metrics, "inferq_worker_batch_size_count")
    assert sample(metrics, "inferq_worker_batch_size_sum") == 64
    assert batches < 64, f"{batches} batches for 64 requests"


def sample(metrics: str, name: str) -> float:
    [value] = [line.split()[-1] for line in metrics.splitlines() if line.startswith(name)]
    return float(value)


def test_a_request_of_the_wrong_length_fails_alone_naming_the_field(served: Stack) -> None:
    good = [{"input": row} for row in IRIS]
    bodies = [*good[:2], {"input": [5.1, 3.5, 1.4]}, good[2]]
    tasks = asyncio.run(results(served, asyncio.run(submit_all(served, "classifier@1", bodies))))
    assert [t["status"] for t in tasks] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert tasks[2]["error"] == {
        "type": "ValueError",
        "message": "'input' must hold 4 values (one example of shape [4]), got 3",
    }


def test_an_unknown_version_is_refused_at_start(served: Stack) -> None:
    worker = served.start_worker("onnx:classifier@9")
    try:
        assert worker.wait(timeout=60) == 2
    except subprocess.TimeoutExpired:
        worker.kill()
        raise
    log = served.log_of(worker)
    assert "cannot serve onnx:classifier@9" in log and "Traceback" not in log, log


def test_the_api_documents_each_served_version(served: Stack) -> None:
    document = httpx.get(f"{served.url}/openapi.json", timeout=10).json()
    schemas = document["components"]["schemas"]
    request = schemas["inferq.onnx.pipeline.v1.Request"]
    assert set(request["properties"]) == {"age", "rooms", "city"}
    assert request["properties"]["city"] == {"type": "array", "items": {"type": "string"}}
    assert set(schemas["inferq.onnx.linear.v1.Response"]["properties"]) == {"scores_1", "total"}


# --- the worker's target, resolved once at start (no servers) ---------------------------


def test_a_target_names_a_version_an_alias_or_the_newest(tmp_path: Path) -> None:
    settings = CatalogSettings(
        catalog_url=f"sqlite:///{tmp_path / 'catalog.db'}",
        model_store_url=str(tmp_path / "models"),
        model_cache_dir=str(tmp_path / "cache"),
    )
    store_in(settings, "m", onnx_graphs.regressor())
    store_in(settings, "m", onnx_graphs.classifier())
    with Catalog.open(settings.catalog_url) as catalog:
        catalog.set_alias("m", "production", 1)
    served = {ref: load_onnx_model_class(ref, settings) for ref in ("m@1", "m@production", "m")}
    assert {ref: cls.name for ref, cls in served.items()} == {
        "m@1": "m@1",
        "m@production": "m@1",
        "m": "m@2",
    }
    assert served["m"].max_batch_size == 32 and served["m"].version == "2"
    assert served["m@1"].request_type.DESCRIPTOR.full_name == "inferq.onnx.m.v1.Request"
    for ref, message in [
        ("nope", "no model named 'nope'"),
        ("m@7", "version 7"),
        ("m@canary", "no alias 'canary'"),
        ("bad name!", "invalid model name"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_onnx_model_class(ref, settings)


def test_the_worker_command_takes_an_onnx_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INFERQ_CATALOG_URL", f"sqlite:///{tmp_path / 'catalog.db'}")
    monkeypatch.setenv("INFERQ_MODEL_STORE_URL", str(tmp_path / "models"))
    monkeypatch.setenv("INFERQ_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    store_in(CatalogSettings(), "digits", onnx_graphs.linear_graph())
    assert load_model_class("onnx:digits@1").name == "digits@1"
    with pytest.raises(ValueError, match="cannot serve onnx:digits@2"):
        load_model_class("onnx:digits@2")


def test_a_version_in_an_s3_store_is_fetched_to_the_cache_and_served(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with S3Server(tmp_path / "moto.log") as s3:
        s3_env(monkeypatch, tmp_path, s3.endpoint)
        boto3.client("s3").create_bucket(Bucket="models")
        settings = CatalogSettings(
            catalog_url=f"sqlite:///{tmp_path / 'catalog.db'}",
            model_store_url="s3://models/onnx",
            model_cache_dir=str(tmp_path / "cache"),
        )
        store_in(settings, "linear", onnx_graphs.linear_graph())
        model_class = load_onnx_model_class("linear", settings)
    assert model_class.path.is_relative_to((tmp_path / "cache").resolve())
    model = model_class(WorkerSettings())
    asyncio.run(model.load())
    [response] = asyncio.run(model.process_batch([model.request_type(input_0=[1, 2, 3])]))
    assert (list(response.scores_1), response.total) == ([-6.5, 3.25], -3.25)  # type: ignore[attr-defined]


def test_a_catalog_that_cannot_be_read_is_a_clear_exit_at_start(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    down = f"postgresql+psycopg://root@127.0.0.1:{free_port()}/test"
    for stack in make_stack(tmp_path_factory, INFERQ_CATALOG_URL=down):
        worker = stack.start_worker("onnx:classifier@1")
        assert worker.wait(timeout=60) == 2
        log = stack.log_of(worker)
        assert "cannot read the catalog at" in log and "INFERQ_CATALOG_URL" in log, log
        assert "Traceback" not in log, log
