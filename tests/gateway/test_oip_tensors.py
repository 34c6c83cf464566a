"""`api_service.core.tensors` in-process: tensors from JSON values and raw bytes, and the
mapping of generic ONNX versions checked against the worker's own reading of the messages
(`workers.onnx_model`), so the gateway's and the worker's layouts cannot drift apart."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api_service.core.tensors import (
    DATATYPES,
    Tensor,
    class_tensors,
    onnx_tensors,
    tensor_from_bytes,
    tensor_from_values,
)
from api_service.routes.v2 import _parse
from catalog.signature import Signature, TensorSpec
from inferq.errors import InvalidRequest
from proto import models_pb2, task_pb2
from workers.onnx_messages import build_messages
from workers.onnx_model import _input, _responses

VALUES: dict[str, list[Any]] = {
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 200, 255],
    "UINT16": [0, 1, 2, 65535],
    "UINT32": [0, 1, 2, 2**32 - 1],
    "UINT64": [0, 1, 2, 2**64 - 1],
    "INT8": [-128, 0, 5, 127],
    "INT16": [-1, 0, 5, 32767],
    "INT32": [-(2**31), 0, 5, 2**31 - 1],
    "INT64": [-(2**63), 0, 5, 2**63 - 1],
    "FP16": [0.5, -1.0, 2.0, 65504.0],
    "FP32": [0.25, -1.5, 3.0, 1e30],
    "FP64": [0.1, -1e300, 3.0, 2.5],
    "BYTES": ["a", "", "héllo", "x" * 300],
}


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_values_and_bytes_round_trip(datatype: str) -> None:
    tensor = tensor_from_values("t", datatype, [2, 2], [VALUES[datatype][:2], VALUES[datatype][2:]])
    assert tensor.shape == (2, 2)
    again = tensor_from_bytes("t", datatype, [2, 2], tensor.to_bytes())
    assert again.array.tolist() == tensor.array.tolist()
    data = list(tensor.json_data())  # flat, row-major; BYTES as text
    if datatype == "FP32":
        assert data == list(np.array(VALUES[datatype], np.float32))
    else:
        assert data == VALUES[datatype]


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("UINT8", [256]),
        ("UINT8", [-1]),
        ("INT8", [1.5]),
        ("INT32", [True]),
        ("BOOL", [1]),
        ("FP32", [1e39]),
        ("FP32", [1.0, math.nan]),  # gRPC's typed contents can hold these; JSON cannot
        ("FP32", [-math.inf, 1.0]),
        ("FP64", [math.inf]),
        ("FP16", [70000.0]),
        ("FP32", ["1.0"]),
        ("BYTES", [1]),
        ("INT64", [2**64]),
    ],
)
def test_values_a_datatype_cannot_hold_are_refused(datatype: str, values: list[Any]) -> None:
    with pytest.raises(InvalidRequest, match="tensor 't'"):
        tensor_from_values("t", datatype, [len(values)], values)


def test_float_values_at_the_range_edge_are_kept_and_past_it_refused() -> None:
    """The largest value as it is written (it rounds to the largest float) is kept; from
    half a step past it (it would round to infinity) a value is refused."""
    for datatype, edge, past in (("FP32", 3.4028235e38, 3.4028236e38), ("FP16", 65519.0, 65520)):
        kept = tensor_from_values("t", datatype, [2], [edge, -edge])
        assert np.isfinite(kept.array).all()
        for value in (past, -past):
            with pytest.raises(InvalidRequest, match="out of"):
                tensor_from_values("t", datatype, [1], [value])
    assert tensor_from_values("t", "FP64", [2], [1.7e308] * 2).array.tolist() == [1.7e308] * 2


def test_raw_bytes_are_checked() -> None:
    with pytest.raises(InvalidRequest, match="takes 8 bytes"):
        tensor_from_bytes("t", "FP32", [2], b"\0" * 7)
    with pytest.raises(InvalidRequest, match="0 or 1"):
        tensor_from_bytes("t", "BOOL", [1], b"\x02")
    with pytest.raises(InvalidRequest, match="left after"):
        tensor_from_bytes("t", "BYTES", [1], b"\x01\0\0\0ab")
    with pytest.raises(InvalidRequest, match="ends at element 1"):
        tensor_from_bytes("t", "BYTES", [2], b"\x01\0\0\0a")


SIGNATURES: dict[str, Any] = {
    "batched": ([("x", "float32", ["batch", 2, 3])], [("y", "float32", ["batch", 2])]),
    "scalar rows": ([("x", "int64", ["batch"])], [("y", "float64", ["batch"])]),
    "variable rows": ([("x", "float64", ["batch", "n"])], [("y", "float64", ["batch", "n"])]),
    "whole": ([("x", "int32", [2, 2]), ("k", "float32", [])], [("y", "int32", [2, 2])]),
    "unknown rank": ([("x", "float32", None)], [("y", "float32", None)]),
    "strings": ([("input:0", "str", ["batch", 1])], [("1", "str", ["batch"])]),
}


def signature(name: str) -> Signature:
    inputs, outputs = SIGNATURES[name]
    specs = [
        tuple(TensorSpec(n, d, None if s is None else tuple(s)) for n, d, s in side)
        for side in (inputs, outputs)
    ]
    return Signature(specs[0], specs[1])


def example(spec: TensorSpec, rows: int) -> np.ndarray:  # type: ignore[type-arg]
    shape = [
        rows if i == 0 and not isinstance(d, int) else (d if isinstance(d, int) else 3)
        for i, d in enumerate(spec.shape if spec.shape is not None else (2, 5))
    ]
    count = int(np.prod(shape))
    if spec.dtype == "str":
        return np.array([f"w{i}".encode() for i in range(count)], object).reshape(shape)
    return np.arange(count).astype(spec.dtype).reshape(shape)


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_onnx_tensors_fill_the_messages_the_worker_reads(name: str) -> None:
    sig = signature(name)
    messages = build_messages(sig, "m", 1)
    mapping = onnx_tensors(sig).bind(messages.request_type, messages.response_type)
    batched = any(s.shape and not isinstance(s.shape[0], int) for s in sig.inputs)
    rows = 3 if batched else 1
    given = {spec.name: example(spec, rows) for spec in sig.inputs}
    tensors = [
        Tensor(spec.name, datatype, given[spec.name])
        for spec, datatype in zip(sig.inputs, [t.datatype for t in mapping.inputs], strict=True)
    ]
    requests = mapping.requests(tensors)
    assert len(requests) == rows
    for field in messages.inputs:  # what the worker feeds ONNX Runtime, request by request
        fed = (
            np.concatenate([_input(field, [r]) for r in requests])
            if field.batched
            else _input(field, requests[:1])
        )
        want = given[field.onnx_name]
        if field.dtype == "str":
            want = np.array([w.decode() for w in want.flat], object).reshape(want.shape)
        assert fed.tolist() == want.tolist(), field
    # The worker's responses, gathered back: same rows.
    out = {spec.name: example(spec, rows) for spec in sig.outputs}
    feeds = [
        (
            v
            if spec.dtype != "str"
            else np.array([w.decode() for w in v.flat], object).reshape(v.shape)
        )
        for spec, v in zip(sig.outputs, out.values(), strict=True)
    ]
    responses = [
        response
        for i in range(rows)
        for response in _responses(
            messages,
            [
                f[i : i + 1] if t.batched else f
                for f, t in zip(feeds, messages.outputs, strict=True)
            ],
            1,
        )
    ]
    gathered = mapping.outputs_of(responses)
    for tensor, spec in zip(gathered, sig.outputs, strict=True):
        assert tensor.array.tolist() == out[spec.name].tolist(), spec.name


def test_a_class_model_maps_field_by_field() -> None:
    mapping = class_tensors(models_pb2.ModelBRequest, models_pb2.ModelBResponse)
    rows = np.ones((2, 64), np.float32)
    requests = mapping.requests([Tensor("pixels", "FP32", rows)])
    assert [len(r.pixels) for r in requests] == [64, 64]  # type: ignore[attr-defined]
    responses = [models_pb2.ModelBResponse(label=i, probabilities=[0.5] * 10) for i in (3, 4)]
    label, probabilities = mapping.outputs_of(responses)
    assert label.array.tolist() == [3, 4] and probabilities.shape == (2, 10)
    ragged = [models_pb2.ModelBResponse(probabilities=[0.5] * n) for n in (9, 10)]
    with pytest.raises(InvalidRequest, match="rows of different shapes"):
        mapping.outputs_of(ragged, ["probabilities"])


def test_a_message_with_a_nested_message_or_map_does_not_map() -> None:
    with pytest.raises(InvalidRequest, match="trace_context is a map"):
        class_tensors(task_pb2.TaskEnvelope, models_pb2.ModelAResponse)
    with pytest.raises(
        InvalidRequest, match=r"tasks is a message \(inferq.TaskEnvelope\)|tasks is a message"
    ):
        class_tensors(models_pb2.ModelARequest, task_pb2.TaskBatch)


DIGITS = Signature(
    (TensorSpec("pixels", "float32", ("batch", 64)),), (TensorSpec("label", "int64", ("batch",)),)
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(["name", "datatype", "shape", "data", "parameters", "binary_data_size"])
TENSOR = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["pixels", "x", 3]),
        "datatype": st.sampled_from(["FP32", "INT64", "BYTES", "BOOL", "FP99", None]),
        "shape": st.lists(st.integers(-2, 70), max_size=3) | JSON,
    },
    optional={
        "data": st.lists(
            st.floats(allow_nan=False) | st.integers() | st.text(max_size=2), max_size=70
        )
        | JSON,
        "parameters": st.dictionaries(FIELDS, JSON | st.integers(-1, 300), max_size=2),
    },
)
VALID = {"name": "pixels", "datatype": "FP32", "shape": [2, 64], "data": [0.5] * 128}
#: A valid request with one thing changed: what a client's bug would send.
NEAR = st.builds(
    lambda key, value, rows: {"inputs": [{**VALID, "shape": [rows, 64], key: value}]},
    st.sampled_from(["name", "datatype", "shape", "data", "parameters"]),
    JSON | st.lists(st.integers(-1, 130), max_size=3),
    st.integers(0, 3),
)
REQUEST = NEAR | st.fixed_dictionaries(
    {"inputs": st.lists(TENSOR, max_size=3) | JSON},
    optional={"outputs": JSON, "parameters": JSON, "id": JSON},
)


@given(
    doc=REQUEST,
    extra=st.binary(max_size=300),
    header_cut=st.integers(-5, 400) | st.none() | st.text(max_size=3),
)
@settings(max_examples=400, deadline=None)
def test_no_request_body_raises_anything_but_invalid_request(
    doc: Any, extra: bytes, header_cut: int | str | None
) -> None:
    header = json.dumps(doc).encode()
    body = header + extra if header_cut is not None else header
    if isinstance(header_cut, int):
        length: str | None = str(len(header) if header_cut > 300 else header_cut)
    else:
        length = header_cut
    mapping = class_tensors(models_pb2.ModelBRequest, models_pb2.ModelBResponse)
    messages = build_messages(DIGITS, "d", 1)
    bound = onnx_tensors(DIGITS).bind(messages.request_type, messages.response_type)
    try:
        parsed = _parse(body, length)
        for model in (mapping, bound):
            model.request_bodies(parsed.inputs)
    except InvalidRequest:
        pass
