"""The gateway's gRPC door (`api_service.grpc`), driven by clients nobody here wrote, against a
real gateway process (uvloop, as ``inferq gateway`` runs) and real workers: Triton's gRPC
client (tritonclient.grpc, and its own copy of the protocol's messages for typed contents),
grpcio-health-checking's and grpcio-reflection's clients. Results equal the native
``POST /predict/{model}?wait=`` path's, for a class model (model_b) and a generic ONNX
version (digits.onnx uploaded through the gateway); bad tensors get INVALID_ARGUMENT and
unknown models NOT_FOUND, never INTERNAL. inferq's own service (submit, get, watch) is called
through stubs of its .proto."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.utils import InferenceServerException

from proto import inferq_service_pb2 as inferq_pb
from proto import inferq_service_pb2_grpc as inferq_grpc
from proto import models_pb2
from tests.conftest import make_stack
from tests.models import onnx_graphs
from tests.stack import ROOT, Stack, wait_until

DIGITS = ROOT / "workers" / "models" / "weights" / "digits.onnx"
PIXELS = np.random.default_rng(17).random((3, 64), dtype=np.float32)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for stack in make_stack(tmp_path_factory, INFERQ_MODEL_CHANGES="loopback"):
        stack.start_gateway()
        for name, onnx_file in (
            ("digits", DIGITS.read_bytes()),
            ("sums", onnx_graphs.row_sums_graph()),
        ):
            answer = httpx.post(
                f"{stack.url}/models/{name}/versions",
                files={"file": (f"{name}.onnx", onnx_file)},
                timeout=60,
            )
            assert answer.status_code == 201, answer.text
        workers = [stack.start_worker("onnx:digits@1"), stack.start_worker("onnx:sums@1")]
        workers.append(stack.start_worker("model_b"))
        for model in ("digits@1", "sums@1", "model_b"):
            stack.wait_live(model, timeout=60, watch=workers)
        yield stack


@pytest.fixture(scope="module")
def client(gateway: Stack) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(gateway.grpc_target)
    yield client
    client.close()


@pytest.fixture(scope="module")
def channel(gateway: Stack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        yield channel


def native(gateway: Stack, model: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{gateway.url}/predict/{model}?wait=10", json=body, timeout=20)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "succeeded", answer.text
    return answer.json()["result"]  # type: ignore[no-any-return]


def pixels_input(array: np.ndarray) -> triton.InferInput:  # type: ignore[type-arg]
    given = triton.InferInput("pixels", list(array.shape), "FP32")
    given.set_data_from_numpy(array)  # tritonclient sends raw_input_contents
    return given


def status_of(error: InferenceServerException) -> str:
    return str(error.status()).removeprefix("StatusCode.")


def test_server_and_model_calls(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata().name == "inferq"
    assert client.is_model_ready("model_b")
    assert client.is_model_ready("digits", "1")
    metadata = client.get_model_metadata("digits", as_json=True)
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": ["-1", "64"]}]
    model_b = client.get_model_metadata("model_b", as_json=True)
    assert [t["name"] for t in model_b["outputs"]] == ["label", "probabilities"]
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("no_such_model")
    assert status_of(raised.value) == "NOT_FOUND"


@pytest.mark.parametrize("model", ["model_b", "digits"])
def test_model_infer_equals_the_native_path(
    gateway: Stack, client: triton.InferenceServerClient, model: str
) -> None:
    result = client.infer(model, [pixels_input(PIXELS)], request_id="r1")
    assert result.get_response().id == "r1"
    labels, probabilities = result.as_numpy("label"), result.as_numpy("probabilities")
    assert labels.shape == (3,) and probabilities.shape == (3, 10)
    served = "model_b" if model == "model_b" else "digits@1"
    for row, label, probs in zip(PIXELS, labels, probabilities, strict=True):
        expected = native(gateway, served, {"pixels": row.tolist()})
        assert int(label) == int(expected["label"])  # JSON writes an int64 as a string
        np.testing.assert_allclose(probs, expected["probabilities"], rtol=1e-6)


def test_typed_contents_equal_raw_contents(client: triton.InferenceServerClient) -> None:
    """The same rows as each input's fp32_contents, built with tritonclient's own copy of the
    protocol's messages and sent through its stub."""
    request = triton_pb.ModelInferRequest(model_name="digits", model_version="1")
    request.inputs.add(name="pixels", datatype="FP32", shape=[3, 64])
    request.inputs[0].contents.fp32_contents.extend(PIXELS.ravel().tolist())
    typed = client._client_stub.ModelInfer(request, timeout=20)
    raw = client.infer("digits", [pixels_input(PIXELS)], model_version="1").get_response()
    assert [o.name for o in typed.outputs] == [o.name for o in raw.outputs]
    assert list(typed.raw_output_contents) == list(raw.raw_output_contents)


def test_a_tensor_of_a_million_floats(client: triton.InferenceServerClient) -> None:
    """8 MB each way: past gRPC's own 4 MiB default (INFERQ_GRPC_MAX_MESSAGE_BYTES)."""
    x = np.random.default_rng(3).random((1, 1_000_000))
    given = triton.InferInput("x", list(x.shape), "FP64")
    given.set_data_from_numpy(x)
    result = client.infer("sums", [given], client_timeout=60)
    np.testing.assert_allclose(result.as_numpy("sums"), x.sum(axis=1))
    np.testing.assert_array_equal(result.as_numpy("doubled"), 2 * x)


def raw_request(**changes: Any) -> triton_pb.ModelInferRequest:
    """Two rows of pixels for digits as raw contents, with ``changes`` to the input (``name``,
    ``datatype``, ``shape``) or to the raw contents (``raw``)."""
    given = {"name": "pixels", "datatype": "FP32", "shape": [2, 64]}
    given.update({k: v for k, v in changes.items() if k != "raw"})
    request = triton_pb.ModelInferRequest(model_name="digits")
    request.inputs.add(**given)
    request.raw_input_contents.extend(changes.get("raw", [PIXELS[:2].tobytes()]))
    return request


@pytest.mark.parametrize(
    "changes",
    [
        {"datatype": "FP64"},  # the model takes FP32
        {"datatype": "FLOAT"},  # no such datatype
        {"shape": [2, 63]},  # the model takes [-1, 64]
        {"shape": [2, 64, 1]},
        {"name": "image"},  # no such input
        {"raw": [PIXELS[:2].tobytes()[:-4]]},  # the raw contents lie about their length
        {"raw": [PIXELS[:2].tobytes(), b"\0" * 8]},  # two raw entries for one input
        {"raw": []},  # no contents at all
    ],
    ids=lambda changes: "-".join(f"{k}" for k in changes),
)
def test_bad_tensors_are_invalid_argument(
    client: triton.InferenceServerClient, changes: dict[str, Any]
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        client._client_stub.ModelInfer(raw_request(**changes), timeout=20)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert raised.value.details()


def test_input_the_model_refuses_is_invalid_argument(client: triton.InferenceServerClient) -> None:
    """63 pixels fit model_b's message (a repeated field) but not the model: its worker's
    ValueError is the client's mistake, not the server's."""
    given = triton.InferInput("pixels", [1, 63], "FP32")
    given.set_data_from_numpy(PIXELS[:1, :63].copy())
    with pytest.raises(InferenceServerException) as raised:
        client.infer("model_b", [given])
    assert status_of(raised.value) == "INVALID_ARGUMENT", raised.value
    assert "64" in str(raised.value.message())


def test_unknown_models_are_not_found(client: triton.InferenceServerClient) -> None:
    for model, version in (("no_such_model", ""), ("digits", "7")):
        with pytest.raises(InferenceServerException) as raised:
            client.infer(model, [pixels_input(PIXELS)], model_version=version)
        assert status_of(raised.value) == "NOT_FOUND", raised.value


def test_submit_then_watch_the_task_to_its_end(gateway: Stack, channel: grpc.Channel) -> None:
    tasks = inferq_grpc.InferqServiceStub(channel)
    row = PIXELS[0]
    request = models_pb2.ModelBRequest(pixels=row.tolist()).SerializeToString()
    task = tasks.Submit(inferq_pb.SubmitRequest(model="model_b", request=request), timeout=10)
    assert task.model == "model_b" and len(task.task_id) == 32
    states = list(tasks.WatchTask(inferq_pb.WatchTaskRequest(task_id=task.task_id), timeout=20))
    assert states[-1].status == "succeeded"
    assert len({s.status for s in states}) == len(states)  # one message per change
    assert states[-1].result_type == "inferq.models.ModelBResponse"
    response = models_pb2.ModelBResponse.FromString(states[-1].result)
    expected = native(gateway, "model_b", {"pixels": row.tolist()})
    assert response.label == expected["label"]
    got = tasks.GetTask(inferq_pb.GetTaskRequest(task_id=task.task_id), timeout=10)
    assert got.status == "succeeded" and got.result == states[-1].result
    # As JSON, held until the end.
    done = tasks.Submit(
        inferq_pb.SubmitRequest(
            model="digits", request_json=json.dumps({"pixels": row.tolist()}), wait_s=10
        ),
        timeout=20,
    )
    assert done.status == "succeeded" and done.model == "digits@1"


@pytest.mark.parametrize(
    ("call", "code"),
    [
        ("Submit", grpc.StatusCode.NOT_FOUND),
        ("SubmitJson", grpc.StatusCode.INVALID_ARGUMENT),
        ("GetTask", grpc.StatusCode.NOT_FOUND),
        ("WatchTask", grpc.StatusCode.NOT_FOUND),
    ],
)
def test_inferq_service_errors(channel: grpc.Channel, call: str, code: grpc.StatusCode) -> None:
    tasks = inferq_grpc.InferqServiceStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        if call == "Submit":
            tasks.Submit(inferq_pb.SubmitRequest(model="no_such_model"), timeout=10)
        elif call == "SubmitJson":
            tasks.Submit(inferq_pb.SubmitRequest(model="model_b", request_json="{"), timeout=10)
        elif call == "GetTask":
            tasks.GetTask(inferq_pb.GetTaskRequest(task_id="0" * 32), timeout=10)
        else:
            list(tasks.WatchTask(inferq_pb.WatchTaskRequest(task_id="nope"), timeout=10))
    assert raised.value.code() is code, raised.value.details()
    trailer = dict(raised.value.trailing_metadata() or ())
    assert trailer["inferq-error-type"] in ("ModelNotFound", "InvalidRequest", "TaskNotFound")


def test_health_names_the_server_and_each_served_model(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "inference.GRPCInferenceService", "model_b", "digits@1"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == SERVING, service
    with pytest.raises(grpc.RpcError) as raised:
        health.Check(health_pb2.HealthCheckRequest(service="no_such_model"), timeout=5)
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    assert set(database.get_services()) >= {
        "inference.GRPCInferenceService",
        "inferq.v1.InferqService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    infer = database.FindFileContainingSymbol("inference.GRPCInferenceService")
    assert "ModelInferRequest" in {m.name for m in infer.message_type}


def test_calls_are_counted_with_the_grpc_door(
    gateway: Stack, client: triton.InferenceServerClient
) -> None:
    series = {"door": "grpc", "route": "/inference.GRPCInferenceService/ModelInfer"}
    before = gateway.metric("inferq_gateway_requests_total", **series, status="OK")
    client.infer("model_b", [pixels_input(PIXELS[:1])])
    after = gateway.metric("inferq_gateway_requests_total", **series, status="OK")
    assert after == before + 1


def test_the_readme_example_runs(gateway: Stack) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## gRPC API\n", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    code = code.replace("127.0.0.1:8001", gateway.grpc_target)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    assert re.fullmatch(r"\[\d \d\]\n", printed.getvalue())


def test_health_follows_workers_and_reads_not_serving_while_draining(stack: Stack) -> None:
    """A model's name turns NOT_SERVING when its last worker leaves; on SIGTERM every name
    does, a call in flight still gets its answer, then the gateway exits."""
    stack.start_gateway()
    gateway = stack.processes[-1]
    sleeper, model_b = stack.start_worker("sleep"), stack.start_worker("model_b")
    stack.wait_live("sleep", watch=[sleeper])
    stack.wait_live("model_b", watch=[model_b])
    channel = grpc.insecure_channel(stack.grpc_target)
    health = health_pb2_grpc.HealthStub(channel)

    def status(service: str) -> int:
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            return health.Check(request, timeout=5).status  # type: ignore[no-any-return]
        except grpc.RpcError as error:  # not yet read from the registry (within 1 s)
            assert error.code() is grpc.StatusCode.NOT_FOUND
            return health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

    wait_until(lambda: status("model_b") == SERVING, 10, "model_b SERVING")
    model_b.send_signal(signal.SIGTERM)
    model_b.wait(20)
    wait_until(lambda: status("model_b") == NOT_SERVING, 20, "model_b NOT_SERVING")
    assert status("sleep") == SERVING

    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert next(watch).status == SERVING
    tasks = inferq_grpc.InferqServiceStub(channel)
    slow = models_pb2.SleepRequest(ms=1500).SerializeToString()
    in_flight = tasks.Submit.future(
        inferq_pb.SubmitRequest(model="sleep", request=slow, wait_s=10), timeout=20
    )
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        url = f"{stack.url}/predict/sleep?wait=10"
        http = pool.submit(httpx.post, url, json={"ms": 3000}, timeout=20)
        time.sleep(0.5)  # both calls are in flight
        gateway.send_signal(signal.SIGTERM)
        # At once, not once the HTTP server has finished its own request.
        assert next(watch).status == NOT_SERVING
        assert not http.done()
        watch.cancel()
        assert in_flight.result().status == "succeeded"
        assert http.result().json()["status"] == "succeeded"
    # uvicorn ends by raising the signal it caught again, once shut down.
    assert gateway.wait(20) in (0, -signal.SIGTERM)
    log = stack.log_of(gateway)
    assert log.index("gRPC stopped") < log.index("Application shutdown complete")
    channel.close()
