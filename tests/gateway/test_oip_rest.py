"""The Open Inference Protocol over REST (`api_service.routes.v2`), driven by Triton's own HTTP
client (tritonclient.http) against a real gateway and real workers: class models (model_a,
model_b) and generic ONNX versions uploaded through the gateway (digits.onnx, a pipeline with
FP32, INT64 and BYTES inputs, a graph with a dynamic inner dimension). Results are compared
with the native ``POST /predict/{model}?wait=`` path's; bad tensors get the protocol's
``{"error": ...}`` with 400, never a 5xx."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from tritonclient.utils import InferenceServerException

from tests.conftest import make_stack
from tests.models import onnx_graphs
from tests.stack import ROOT, Stack

DIGITS = ROOT / "workers" / "models" / "weights" / "digits.onnx"
PIXELS = np.random.default_rng(16).random((3, 64), dtype=np.float32)
HOUSES = [(31.0, 2, "Paris"), (64.5, 5, "Lyon"), (22.0, 1, "Nice")]
#: Above a 1M-float tensor in binary and INFERQ_MAX_BODY_BYTES (1 MiB).
OIP_MAX_BODY_BYTES = 8_000_000
MILLION = 1_000_000


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for stack in make_stack(
        tmp_path_factory,
        INFERQ_MODEL_CHANGES="loopback",
        INFERQ_OIP_MAX_BODY_BYTES=str(OIP_MAX_BODY_BYTES),
    ):
        stack.start_gateway()
        uploads = {
            "digits": DIGITS.read_bytes(),
            "houses": onnx_graphs.pipeline(),
            "sums": onnx_graphs.row_sums_graph(),
            "doubler": onnx_graphs.doubler(width=MILLION),
        }
        for name, onnx_file in uploads.items():
            answer = httpx.post(
                f"{stack.url}/models/{name}/versions",
                files={"file": (f"{name}.onnx", onnx_file)},
                timeout=60,
            )
            assert answer.status_code == 201, answer.text
        httpx.put(f"{stack.url}/models/digits/aliases/live", json={"version": 1}).raise_for_status()
        workers = [stack.start_worker(f"onnx:{name}@1") for name in uploads]
        workers += [stack.start_worker(name) for name in ("model_a", "model_b", "sleep")]
        for model in ("digits@1", "houses@1", "sums@1", "doubler@1", "model_a", "model_b", "sleep"):
            stack.wait_live(model, timeout=60, watch=workers)
        yield stack


@pytest.fixture(scope="module")
def client(gateway: Stack) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(gateway.url.removeprefix("http://"))
    yield client
    client.close()


def native(gateway: Stack, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The result the native path gives for one request."""
    answer = httpx.post(f"{gateway.url}/predict/{model}?wait=10", json=body, timeout=20)
    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert view["status"] == "succeeded", view
    return view["result"]  # type: ignore[no-any-return]


def tensor(name: str, array: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:  # type: ignore[type-arg]
    given = triton.InferInput(name, list(array.shape), datatype)
    given.set_data_from_numpy(array, binary_data=binary)
    return given


def outputs(*names: str, binary: bool) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=binary) for name in names]


# --- server and models --------------------------------------------------------------------


def test_server_metadata_and_health(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "inferq"
    assert {"binary_tensor_data", "async_infer"} <= set(metadata["extensions"])


def test_onnx_version_metadata_comes_from_its_signature(
    client: triton.InferenceServerClient,
) -> None:
    expected = {
        "name": "digits",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        ],
    }
    assert client.get_model_metadata("digits") == expected
    assert client.get_model_metadata("digits", "1") == expected
    assert client.get_model_metadata("digits", "live") == expected  # an alias
    houses = client.get_model_metadata("houses")
    assert [(t["name"], t["datatype"], t["shape"]) for t in houses["inputs"]] == [
        ("age", "FP32", [-1, 1]),
        ("rooms", "INT64", [-1, 1]),
        ("city", "BYTES", [-1, 1]),
    ]
    sums = client.get_model_metadata("sums")
    assert sums["inputs"] == [{"name": "x", "datatype": "FP64", "shape": [-1, -1]}]


def test_class_model_metadata_maps_fields_to_tensors(client: triton.InferenceServerClient) -> None:
    assert client.get_model_metadata("model_b", "1") == {
        "name": "model_b",
        "versions": ["1"],
        "platform": "inferq_python",
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, -1]}],
        "outputs": [
            {"name": "label", "datatype": "INT32", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, -1]},
        ],
    }
    model_a = client.get_model_metadata("model_a")
    assert model_a["inputs"] == [{"name": "data", "datatype": "BYTES", "shape": [-1]}]


def test_model_ready_and_unknown_models(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready("digits")
    assert client.is_model_ready("digits", "1")
    assert client.is_model_ready("model_b")
    assert not client.is_model_ready("no_such_model")
    unknown = [("no_such_model", ""), ("digits", "7"), ("model_b", "2"), ("digits", "9" * 20)]
    for model, version in unknown:
        with pytest.raises(InferenceServerException) as raised:
            client.get_model_metadata(model, version)
        assert raised.value.status() == "404"


def test_a_version_no_worker_serves(gateway: Stack, client: triton.InferenceServerClient) -> None:
    upload = httpx.post(
        f"{gateway.url}/models/idle/versions",
        files={"file": ("idle.onnx", onnx_graphs.doubler(width=4))},
        timeout=60,
    )
    assert upload.status_code == 201, upload.text
    assert not client.is_model_ready("idle")
    metadata = client.get_model_metadata("idle", "1")  # from the catalog's signature
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    x = np.ones((1, 4), np.float32)
    with pytest.raises(InferenceServerException) as raised:
        client.infer("idle", [tensor("x", x, "FP32", False)])
    assert raised.value.status() == "503"
    assert "deploy" in raised.value.message()


def test_other_paths_get_the_protocols_404(gateway: Stack) -> None:
    for method, path in (("GET", "/v2/repository/index"), ("POST", "/v2/models/a/b/infer")):
        answer = httpx.request(method, f"{gateway.url}{path}")
        assert answer.status_code == 404
        assert isinstance(answer.json()["error"], str)


# --- infer --------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("model", ["digits", "model_b"])
def test_infer_gives_the_native_results(
    gateway: Stack, client: triton.InferenceServerClient, model: str, binary: bool
) -> None:
    result = client.infer(
        model,
        [tensor("pixels", PIXELS, "FP32", binary)],
        outputs=outputs("label", "probabilities", binary=binary),
    )
    served = "digits@1" if model == "digits" else model
    expected = [native(gateway, served, {"pixels": row.tolist()}) for row in PIXELS]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (3, 10)
    np.testing.assert_array_equal(
        probabilities, np.array([e["probabilities"] for e in expected], np.float32)
    )
    labels = result.as_numpy("label")
    assert labels.tolist() == [int(e["label"]) for e in expected]
    response = result.get_response()
    assert response["model_name"] == model
    assert response["model_version"] == "1"


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_a_compressed_request(
    gateway: Stack, client: triton.InferenceServerClient, compression: str
) -> None:
    result = client.infer(
        "digits",
        [tensor("pixels", PIXELS[:1], "FP32", True)],
        request_compression_algorithm=compression,
    )
    expected = native(gateway, "digits@1", {"pixels": PIXELS[0].tolist()})
    assert result.as_numpy("label").tolist() == [int(expected["label"])]


def test_bad_or_swelling_compressed_bodies(gateway: Stack) -> None:
    url = f"{gateway.url}/v2/models/digits/infer"
    answer = httpx.post(url, content=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 400
    bomb = gzip.compress(b" " * (OIP_MAX_BODY_BYTES + 1))
    answer = httpx.post(url, content=bomb, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 413
    assert "inflated" in answer.json()["error"]
    answer = httpx.post(url, content=b"{}", headers={"Content-Encoding": "br"})
    assert answer.status_code == 415


def test_infer_with_no_outputs_named_answers_all_in_binary(
    gateway: Stack, client: triton.InferenceServerClient
) -> None:
    # Triton's client then asks binary_data_output for every output.
    result = client.infer("digits", [tensor("pixels", PIXELS[:1], "FP32", True)], "live")
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label", "probabilities"]
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
    expected = native(gateway, "digits@live", {"pixels": PIXELS[0].tolist()})
    np.testing.assert_array_equal(
        result.as_numpy("probabilities")[0], np.array(expected["probabilities"], np.float32)
    )


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_with_inputs_of_several_datatypes(
    gateway: Stack, client: triton.InferenceServerClient, binary: bool
) -> None:
    ages = np.array([[a] for a, _, _ in HOUSES], np.float32)
    rooms = np.array([[r] for _, r, _ in HOUSES], np.int64)
    cities = np.array([[c.encode()] for _, _, c in HOUSES], object)
    inputs = [
        tensor("age", ages, "FP32", binary),
        tensor("rooms", rooms, "INT64", binary),
        tensor("city", cities, "BYTES", binary),
    ]
    result = client.infer("houses", inputs)
    [name] = [o["name"] for o in client.get_model_metadata("houses")["outputs"]]
    expected = [
        native(gateway, "houses@1", {"age": [a], "rooms": [str(r)], "city": [c]})
        for a, r, c in HOUSES
    ]
    field = next(iter(expected[0]))
    got = result.as_numpy(name)
    # The rows may run as one batch here and one by one there: ONNX Runtime's sums may
    # differ in the last bit.
    np.testing.assert_allclose(
        got, np.array([e[field] for e in expected], got.dtype).reshape(got.shape), rtol=1e-6
    )


def test_infer_with_a_dynamic_inner_dimension(
    gateway: Stack, client: triton.InferenceServerClient
) -> None:
    x = np.arange(8, dtype=np.float64).reshape(2, 4)
    result = client.infer("sums", [tensor("x", x, "FP64", True)])
    np.testing.assert_array_equal(result.as_numpy("sums"), x.sum(axis=1))
    np.testing.assert_array_equal(result.as_numpy("doubled"), 2 * x)
    expected = native(gateway, "sums@1", {"x": x[0].tolist(), "x_shape": ["4"]})
    assert expected["sums"] == 6.0


def test_infer_with_a_string_field_of_a_class_model(
    gateway: Stack, client: triton.InferenceServerClient
) -> None:
    words = np.array([b"hello", "héllo".encode()], object)
    result = client.infer("model_a", [tensor("data", words, "BYTES", False)])
    expected = [native(gateway, "model_a", {"data": w.decode()})["reply"] for w in words]
    assert [r.decode() for r in result.as_numpy("reply")] == expected


def test_a_large_body_is_taken_up_to_the_oip_limit(
    gateway: Stack, client: triton.InferenceServerClient
) -> None:
    rows = np.random.default_rng(5).random((1000, 64)).astype(np.float32)
    body = json.dumps(
        {
            "inputs": [
                {"name": "pixels", "datatype": "FP32", "shape": [1000, 64], "data": rows.tolist()}
            ]
        }
    ).encode()
    assert 1_048_576 < len(body) < OIP_MAX_BODY_BYTES  # past INFERQ_MAX_BODY_BYTES
    answer = httpx.post(f"{gateway.url}/v2/models/digits/infer", content=body, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    [label, probabilities] = answer.json()["outputs"]
    assert label["shape"] == [1000] and probabilities["shape"] == [1000, 10]
    too_big = b" " * (OIP_MAX_BODY_BYTES + 1)
    answer = httpx.post(f"{gateway.url}/v2/models/digits/infer", content=too_big, timeout=60)
    assert answer.status_code == 413
    assert "INFERQ_OIP_MAX_BODY_BYTES" in answer.json()["error"]


def test_a_million_floats_through_the_binary_extension(
    client: triton.InferenceServerClient,
) -> None:
    x = np.random.default_rng(7).random((1, MILLION), dtype=np.float32)
    result = client.infer(
        "doubler", [tensor("x", x, "FP32", True)], outputs=outputs("y", binary=True)
    )
    np.testing.assert_array_equal(result.as_numpy("y"), 2 * x)


# --- the asynchronous form ----------------------------------------------------------------


def test_async_infer_answers_202_with_the_tasks(gateway: Stack) -> None:
    rows = {"name": "pixels", "datatype": "FP32", "shape": [2, 64], "data": PIXELS[:2].tolist()}
    body = {"id": "r-1", "inputs": [rows]}
    answer = httpx.post(
        f"{gateway.url}/v2/models/digits/versions/1/infer",
        json=body,
        headers={"Prefer": "respond-async"},
    )
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert (accepted["model_name"], accepted["model_version"], accepted["id"]) == (
        "digits",
        "1",
        "r-1",
    )
    assert len(accepted["tasks"]) == 2
    for task, row in zip(accepted["tasks"], PIXELS, strict=False):
        assert task["location"] == f"/tasks/{task['task_id']}"
        view = httpx.get(f"{gateway.url}{task['location']}?wait=10", timeout=20).json()
        assert view["status"] == "succeeded"
        assert view["result"] == native(gateway, "digits@1", {"pixels": row.tolist()})
    one = httpx.post(
        f"{gateway.url}/v2/models/model_b/infer",
        json={"inputs": [{**rows, "shape": [1, 64], "data": PIXELS[0].tolist()}]},
        headers={"Prefer": "respond-async"},
    )
    assert one.status_code == 202
    assert one.headers["location"] == one.json()["tasks"][0]["location"]


# --- bad requests -------------------------------------------------------------------------

PIXEL_ROW = [0.5] * 64


def pixels(**changes: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": PIXEL_ROW, **changes}
        ]
    }


BAD_JSON = {
    "wrong shape": pixels(shape=[1, 63], data=[0.5] * 63),
    "wrong rank": pixels(shape=[64]),
    "wrong datatype": pixels(datatype="FP64"),
    "unknown datatype": pixels(datatype="FLOAT"),
    "size not the shape's": pixels(shape=[2, 64]),
    "negative dimension": pixels(shape=[-1, 64]),
    "a string in FP32": pixels(data=["a"] * 64),
    "ragged data": pixels(shape=[2, 64], data=[PIXEL_ROW, [0.5] * 63]),
    "value past FP32": pixels(data=[1e39] * 64),
    "unknown input": {"inputs": [{**pixels()["inputs"][0], "name": "pixel"}]},
    "no inputs": {"inputs": []},
    "no data": {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64]}]},
    "unknown output": {**pixels(), "outputs": [{"name": "labels"}]},
    "zero rows": pixels(shape=[0, 64], data=[]),
}


@pytest.mark.parametrize("model", ["digits", "model_b"])
@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_bad_tensors_get_400(gateway: Stack, model: str, case: str) -> None:
    answer = httpx.post(f"{gateway.url}/v2/models/{model}/infer", json=BAD_JSON[case])
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error"} and isinstance(answer.json()["error"], str)


def binary_request(
    sizes: list[int], data: bytes, header_length: int | None = None
) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "pixels",
                    "datatype": "FP32",
                    "shape": [1, 64],
                    "parameters": {"binary_data_size": size},
                }
                for size in sizes
            ]
        }
    ).encode()
    length = len(header) if header_length is None else header_length
    return header + data, {"Inference-Header-Content-Length": str(length)}


ROW = np.full(64, 0.5, np.float32).tobytes()
HEADER = "Inference-Header-Content-Length"
LYING: dict[str, tuple[bytes, Any]] = {
    "size past the body": binary_request([256], ROW[:200]),
    "size short of the shape": binary_request([200], ROW[:200]),
    "bytes left over": binary_request([256], ROW + b"\0\0\0\0"),
    "header length past the body": binary_request([256], ROW, header_length=10_000),
    "header length inside the JSON": binary_request([256], ROW, header_length=20),
    "header length not a number": binary_request([256], ROW, header_length=-1),
    "header length of other digits": (
        binary_request([256], ROW)[0],
        {HEADER: "²".encode("latin-1")},
    ),
}


@pytest.mark.parametrize("case", sorted(LYING))
def test_binary_lengths_that_lie_get_400(gateway: Stack, case: str) -> None:
    body, headers = LYING[case]
    answer = httpx.post(f"{gateway.url}/v2/models/digits/infer", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert isinstance(answer.json()["error"], str)


def test_lying_bytes_elements_get_400(gateway: Stack) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "data",
                    "datatype": "BYTES",
                    "shape": [2],
                    "parameters": {"binary_data_size": 9},
                }
            ]
        }
    ).encode()
    data = b"\x02\0\0\0hi" + b"\xff\0\0"  # the second element's length runs past the end
    answer = httpx.post(
        f"{gateway.url}/v2/models/model_a/infer",
        content=header + data,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert answer.status_code == 400, answer.text


def test_not_json_and_unknown_models(gateway: Stack) -> None:
    answer = httpx.post(f"{gateway.url}/v2/models/digits/infer", content=b"\x00\x01binary")
    assert answer.status_code == 400
    assert "Inference-Header-Content-Length" in answer.json()["error"]
    answer = httpx.post(f"{gateway.url}/v2/models/nothing/infer", json=pixels())
    assert answer.status_code == 404
    assert set(answer.json()) == {"error"}
    answer = httpx.post(f"{gateway.url}/v2/models/digits/versions/9/infer", json=pixels())
    assert answer.status_code == 404


def test_tritonclient_sees_the_errors(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.infer("digits", [tensor("pixels", PIXELS[:, :32].copy(), "FP32", True)])
    assert raised.value.status() == "400"
    assert "pixels" in raised.value.message()


def test_infer_that_outlasts_its_timeout_answers_504_naming_the_task(gateway: Stack) -> None:
    body = {
        "inputs": [{"name": "ms", "datatype": "INT32", "shape": [1], "data": [1500]}],
        "parameters": {"timeout": 200_000},  # microseconds, as Triton's clients send it
    }
    answer = httpx.post(f"{gateway.url}/v2/models/sleep/infer", json=body, timeout=10)
    assert answer.status_code == 504, answer.text
    [location] = re.findall(r"/tasks/[0-9a-f]{32}", answer.json()["error"])
    # Its deadline was the timeout too: the worker, still sleeping, finishes it late or not.
    view = httpx.get(f"{gateway.url}{location}?wait=5", timeout=10).json()
    assert view["status"] in ("succeeded", "expired")


MALFORMED = {
    "inputs not a list": {"inputs": {"name": "pixels"}},
    "an input not an object": {"inputs": ["pixels"]},
    "no name": {"inputs": [{"datatype": "FP32", "shape": [1, 64], "data": PIXEL_ROW}]},
    "shape not a list": pixels(shape="1,64"),
    "shape of floats": pixels(shape=[1.0, 64]),
    "data an object": pixels(data={"values": PIXEL_ROW}),
    "parameters not an object": pixels(parameters=[1]),
    "binary size a string": pixels(parameters={"binary_data_size": "256"}),
    "outputs not a list": {**pixels(), "outputs": "label"},
    "binary_data_output not a bool": {**pixels(), "parameters": {"binary_data_output": "yes"}},
    "timeout negative": {**pixels(), "parameters": {"timeout": -5}},
    "id a number": {**pixels(), "id": 7},
    "an input twice": {"inputs": pixels()["inputs"] * 2},
    "the request a list": [pixels()],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_requests_get_400(gateway: Stack, case: str) -> None:
    answer = httpx.post(f"{gateway.url}/v2/models/digits/infer", json=MALFORMED[case])
    assert answer.status_code == 400, answer.text
    assert isinstance(answer.json()["error"], str)


def test_the_readme_example_runs(gateway: Stack) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Open Inference Protocol", 1)[1]
    [code] = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    code = code.replace("127.0.0.1:8000", gateway.url.removeprefix("http://"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    assert re.fullmatch(r"\[\d \d\]\n", printed.getvalue())


def test_no_generated_request_to_v2_answers_5xx(gateway: Stack) -> None:
    api = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]  # type: ignore[union-attr]
    operations = [o for o in operations if o.path.startswith("/v2")]
    assert len(operations) == 9
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def never_5xx(case: schemathesis.Case) -> None:
            response = case.call(base_url=gateway.url, timeout=40)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)

        never_5xx()
