"""Uploading models through a real gateway process (`POST /models/{name}/versions`), listing
and deleting versions, aliases, and the INFERQ_MODEL_CHANGES gate. Every refused upload gets
its 4xx and leaves nothing behind: no model, no version, no file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.catalog.test_onnx_check import huge_constant
from tests.conftest import make_stack
from tests.models.onnx_graphs import doubler
from tests.stack import Stack


def zipmap_classifier() -> bytes:
    """skl2onnx's default classifier export: its probabilities are a ZipMap (not a tensor)."""
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    return to_onnx(model, x[:1].astype(np.float32)).SerializeToString()


def external_data() -> bytes:
    """A model whose weight points at a file outside the upload (CVE-2022-25882's family)."""
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("Mul", ["x", "factor"], ["y"])],
            "outside",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
            [numpy_helper.from_array(np.array(2.0, np.float32), "factor")],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../../etc/passwd"), ("offset", "0"), ("length", "4")):
        weight.external_data.add(key=key, value=value)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway that takes changes from loopback clients (what `inferq up` sets), with a
    small upload limit."""
    for stack in make_stack(
        tmp_path_factory,
        INFERQ_MODEL_CHANGES="loopback",
        INFERQ_MAX_MODEL_BYTES="100000",
        INFERQ_VALIDATION_MEMORY_BYTES=str(512 * 1024 * 1024),
    ):
        stack.start_gateway()
        yield stack


def upload(stack: Stack, name: str, data: bytes, **fields: str) -> requests.Response:
    return requests.post(
        f"{stack.url}/models/{name}/versions",
        files={"file": ("model.onnx", data, "application/octet-stream")},
        data=fields,
        timeout=60,
    )


def store_files(stack: Stack) -> list[Path]:
    root = Path(stack.env["INFERQ_MODEL_STORE_URL"])
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_an_upload_answers_201_with_the_version_and_its_signature(gateway: Stack) -> None:
    answer = upload(
        gateway,
        "scaler",
        doubler(),
        description="doubles",
        tags='{"team": "ml"}',
        class_labels="[]",
        alias="production",
    )
    assert answer.status_code == 201, answer.text
    version = answer.json()
    assert answer.headers["location"] == f"/models/scaler/versions/{version['version']}"
    assert version["ref"] == f"scaler@{version['version']}"
    assert version["size"] == len(doubler())
    assert len(version["sha256"]) == 64
    assert version["signature"] == {
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 3]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 3]}],
    }
    assert version["metadata"] == {
        "description": "doubles",
        "tags": {"team": "ml"},
        "class_labels": [],
    }
    assert version["aliases"] == ["production"]
    listed = requests.get(f"{gateway.url}/models/scaler/versions", timeout=10).json()
    assert [v["version"] for v in listed["versions"]] == [version["version"]]
    resolved = requests.get(f"{gateway.url}/models/scaler@production", timeout=10).json()
    assert resolved["live"] is False
    assert resolved["catalog"]["sha256"] == version["sha256"]


def test_a_raw_body_upload_is_the_next_version(gateway: Stack) -> None:
    first = upload(gateway, "raw", doubler(2.0))
    second = requests.post(
        f"{gateway.url}/models/raw/versions?description=triples",
        data=doubler(3.0),
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert first.status_code == 201 and second.status_code == 201, second.text
    assert second.json()["version"] == first.json()["version"] + 1
    assert second.json()["metadata"]["description"] == "triples"
    catalog = requests.get(f"{gateway.url}/catalog", timeout=10).json()
    raw = next(m for m in catalog["models"] if m["name"] == "raw")
    assert raw["kind"] == "onnx"
    assert [v["version"] for v in raw["versions"]] == [1, 2]


@pytest.mark.parametrize(
    ("name", "data", "status", "reason", "says"),
    [
        ("garbage", b"not an onnx file at all", 422, "unreadable", "ONNX"),
        ("zipmap", None, 422, "zipmap", "'zipmap': False"),
        ("outside", None, 422, "external_data", "external"),
        ("custom", None, 422, "operator_domain", "com.example"),
        ("huge", b"\0" * 150_000, 413, "too_large", "INFERQ_MAX_MODEL_BYTES"),
        ("greedy", None, 422, "memory", "INFERQ_VALIDATION_MEMORY_BYTES"),
    ],
)
def test_a_refused_upload_says_why_and_leaves_nothing_behind(
    gateway: Stack, name: str, data: bytes | None, status: int, reason: str, says: str
) -> None:
    makers = {
        "zipmap": zipmap_classifier,
        "outside": external_data,
        "custom": lambda: doubler(domain="com.example"),
        "greedy": lambda: huge_constant(256 * 1024 * 1024).SerializeToString(),  # 1 GiB to load
    }
    data = data or makers[name]()
    before = store_files(gateway)
    answer = upload(gateway, name, data)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["reason"] == reason or (reason == "memory" and error["reason"] == "crashed")
    assert says.lower() in error["message"].lower()
    assert requests.get(f"{gateway.url}/models/{name}/versions", timeout=10).status_code == 404
    assert store_files(gateway) == before
    assert requests.get(f"{gateway.url}/readyz", timeout=10).status_code == 200  # unharmed


MODEL = {"file": ("model.onnx", doubler())}


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "says"),
    [
        ("/models/bad name/versions", {"files": MODEL}, 422, "invalid model name"),
        ("/models/ok/versions", {"files": {"other": ("m", b"x")}}, 422, "no 'file' part"),
        ("/models/ok/versions", {"json": {"file": "x"}}, 415, "multipart/form-data"),
        ("/models/ok/versions", {"files": {"file": ("m", b"")}}, 422, "empty"),
        ("/models/ok/versions", {"files": MODEL, "data": {"tags": "[1]"}}, 422, "tags"),
        ("/models/ok/versions", {"files": MODEL, "data": {"alias": "7"}}, 422, "alias"),
    ],
)
def test_a_malformed_upload_is_a_clear_4xx(
    gateway: Stack, path: str, kwargs: dict[str, Any], status: int, says: str
) -> None:
    answer = requests.post(f"{gateway.url}{path}", timeout=60, **kwargs)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]["message"]
    assert requests.get(f"{gateway.url}/models/ok/versions", timeout=10).status_code == 404


def test_aliases_move_and_a_version_an_alias_names_cannot_be_deleted(gateway: Stack) -> None:
    for factor in (2.0, 3.0):
        assert upload(gateway, "aliased", doubler(factor)).status_code == 201
    url = f"{gateway.url}/models/aliased"
    assert requests.put(f"{url}/aliases/canary", json={"version": 1}, timeout=10).status_code == 200
    assert (
        requests.get(f"{gateway.url}/models/aliased@canary", timeout=10).json()["catalog"][
            "version"
        ]
        == 1
    )
    refused = requests.delete(f"{url}/versions/1", timeout=10)
    assert refused.status_code == 409 and "canary" in refused.json()["error"]["message"]
    moved = requests.put(f"{url}/aliases/canary", json={"version": 2}, timeout=10)
    assert moved.json() == {"model": "aliased", "alias": "canary", "version": 2}
    assert (
        requests.get(f"{gateway.url}/models/aliased@canary", timeout=10).json()["catalog"][
            "version"
        ]
        == 2
    )
    deleted = requests.delete(f"{url}/versions/1", timeout=10)
    assert deleted.status_code == 200 and deleted.json()["state"] == "deleted"
    assert requests.get(f"{url}/versions/1", timeout=10).status_code == 404
    assert requests.delete(f"{url}/aliases/canary", timeout=10).status_code == 204
    assert requests.get(f"{gateway.url}/models/aliased@canary", timeout=10).status_code == 404
    assert requests.put(f"{url}/aliases/canary", json={"version": 9}, timeout=10).status_code == 404


def test_changes_are_refused_unless_the_setting_allows_them(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    for stack in make_stack(tmp_path_factory):  # the default: off
        stack.start_gateway()
        answer = upload(stack, "scaler", doubler())
        assert answer.status_code == 403
        assert "INFERQ_MODEL_CHANGES" in answer.json()["error"]["message"]
        put = requests.put(f"{stack.url}/models/scaler/aliases/a", json={"version": 1}, timeout=10)
        assert put.status_code == 403
        assert requests.get(f"{stack.url}/catalog", timeout=10).json() == {"models": []}
        assert store_files(stack) == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/models/ok/versions/9223372036854775808", None),
        ("DELETE", "/models/ok/versions/0", None),
        ("PUT", "/models/ok/versions/9223372036854775808/deployment", {"replicas": 1}),
        ("PUT", "/models/ok/aliases/prod", {"version": 9223372036854775808}),
        ("POST", "/predict/ok@²", {}),  # "²".isdigit() is True
        ("POST", "/predict/ok@99999999999", {}),
    ],
)
def test_a_version_number_out_of_range_is_a_422(
    gateway: Stack, method: str, path: str, body: dict[str, int] | None
) -> None:
    answer = requests.request(method, f"{gateway.url}{path}", json=body, timeout=10)
    assert answer.status_code == 422, answer.text
