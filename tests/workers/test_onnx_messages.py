"""The generic ONNX worker's messages (`workers.onnx_messages`) derived from a signature, and
its model (`workers.onnx_model`) run in-process on models made here: no servers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from catalog.records import Version, VersionMetadata, VersionState
from catalog.signature import Signature, TensorSpec
from inferq.settings import WorkerSettings
from model_registry.descriptors import build_descriptor_set, load_message_types
from model_registry.json_schema import message_json_schema
from tests.models import onnx_graphs
from workers.onnx_messages import build_messages, identifier, tensor_fields
from workers.onnx_model import OnnxModel, onnx_model_class

DIGITS = Path(__file__).resolve().parents[2] / "workers" / "models" / "weights" / "digits.onnx"
F = FieldDescriptor


def signature(*inputs: TensorSpec, outputs: tuple[TensorSpec, ...] = ()) -> Signature:
    return Signature(inputs=inputs, outputs=outputs or (TensorSpec("y", "float32", (None,)),))


def fields(message: type[Message]) -> dict[str, tuple[int, bool]]:
    """Each field's (type, repeated)."""
    return {f.name: (f.type, f.is_repeated) for f in message.DESCRIPTOR.fields}


# --- messages ---------------------------------------------------------------------------


def test_onnx_names_become_unique_identifiers_and_json_uses_them() -> None:
    specs = (
        TensorSpec("input:0", "float32", ("N", 2)),
        TensorSpec("x.1", "float32", ("N", 2)),
        TensorSpec("x:1", "float32", ("N", 2)),
        TensorSpec("1", "float32", ("N", 2)),
    )
    messages = build_messages(signature(*specs), "m", 1)
    assert [(t.onnx_name, t.field) for t in messages.inputs] == [
        ("input:0", "input_0"),
        ("x.1", "x_1"),
        ("x:1", "x_1_2"),
        ("1", "t_1"),
    ]
    descriptor = messages.request_type.DESCRIPTOR
    assert [(f.name, f.json_name) for f in descriptor.fields] == [
        (name, name) for name in ("input_0", "x_1", "x_1_2", "t_1")
    ]
    request = json_format.Parse('{"input_0": [1, 2], "x_1_2": [3, 4]}', messages.request_type())
    assert list(request.input_0) == [1, 2] and list(request.x_1_2) == [3, 4]  # type: ignore[attr-defined]
    assert identifier("Ünïcode name") == "t__n_code_name"


def test_each_dtype_has_its_field_type() -> None:
    expected = {
        "float32": F.TYPE_FLOAT,
        "float16": F.TYPE_FLOAT,
        "float64": F.TYPE_DOUBLE,
        "int8": F.TYPE_INT32,
        "int16": F.TYPE_INT32,
        "int32": F.TYPE_INT32,
        "uint8": F.TYPE_UINT32,
        "uint16": F.TYPE_UINT32,
        "uint32": F.TYPE_UINT32,
        "int64": F.TYPE_INT64,
        "uint64": F.TYPE_UINT64,
        "bool": F.TYPE_BOOL,
        "str": F.TYPE_STRING,
    }
    specs = [TensorSpec(f"t_{dtype}", dtype, (None, 2)) for dtype in expected]
    messages = build_messages(signature(*specs), "m", 1)
    assert fields(messages.request_type) == {
        f"t_{dtype}": (kind, True) for dtype, kind in expected.items()
    }


def test_a_request_holds_one_example_and_a_shape_where_it_varies() -> None:
    messages = build_messages(
        signature(
            TensorSpec("pixels", "float32", ("batch", 8, 8)),  # one example: 64 values
            TensorSpec("weight", "float32", ("batch",)),  # one example: a scalar
            TensorSpec("tokens", "int64", ("batch", "seq")),  # example of varying length
            TensorSpec("scale", "float32", (1, 3)),  # fixed: the whole tensor
            TensorSpec("bias", "float64", ()),  # a fixed scalar
            TensorSpec("anything", "float32", None),  # rank unknown
        ),
        "m",
        1,
    )
    assert fields(messages.request_type) == {
        "pixels": (F.TYPE_FLOAT, True),
        "weight": (F.TYPE_FLOAT, False),
        "tokens": (F.TYPE_INT64, True),
        "tokens_shape": (F.TYPE_INT64, True),
        "scale": (F.TYPE_FLOAT, True),
        "bias": (F.TYPE_DOUBLE, False),
        "anything": (F.TYPE_FLOAT, True),
        "anything_shape": (F.TYPE_INT64, True),
    }
    pixels, weight, tokens, scale, bias, anything = messages.inputs
    assert (pixels.batched, pixels.count, pixels.stackable) == (True, 64, True)
    assert (weight.scalar, weight.stackable) == (True, True)
    assert (tokens.batched, tokens.count, tokens.stackable) == (True, None, False)
    assert (scale.batched, scale.count, bias.scalar) == (False, 3, True)
    assert (anything.batched, anything.example_shape) == (False, None)
    assert not messages.batchable


def test_a_shape_field_never_takes_a_tensor_name() -> None:
    messages = build_messages(
        signature(TensorSpec("x", "float32", ("N", "M")), TensorSpec("x_shape", "int64", ("N",))),
        "m",
        1,
    )
    assert [(t.field, t.shape_field) for t in messages.inputs] == [
        ("x", "x_shape_2"),
        ("x_shape", None),
    ]


def test_a_model_batches_only_when_every_tensor_stacks() -> None:
    example = TensorSpec("x", "float32", (None, 4))
    assert build_messages(signature(example), "m", 1).batchable
    whole_output = (TensorSpec("mean", "float32", (4,)),)
    assert not build_messages(signature(example, outputs=whole_output), "m", 1).batchable
    fixed_input = TensorSpec("k", "int64", (1,))
    assert not build_messages(signature(example, fixed_input), "m", 1).batchable


def test_an_element_type_no_field_holds_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'z' has element type complex64"):
        tensor_fields((TensorSpec("z", "complex64", (None,)),))


def test_messages_travel_as_descriptors_to_the_gateway() -> None:
    messages = build_messages(
        signature(TensorSpec("x", "float32", (None, 2)), TensorSpec("city", "str", (None, 1))),
        "my-model.v2",
        7,
    )
    assert messages.request_type.DESCRIPTOR.full_name == "inferq.onnx.my_model_v2.v7.Request"
    descriptor_set = build_descriptor_set(messages.request_type, messages.response_type)
    types = load_message_types(descriptor_set)
    assert types.names == [
        "inferq.onnx.my_model_v2.v7.Request",
        "inferq.onnx.my_model_v2.v7.Response",
    ]
    request_class = types.message_class("inferq.onnx.my_model_v2.v7.Request")
    request = json_format.Parse('{"x": [1.5, 2], "city": ["Nice"]}', request_class())
    assert messages.request_type.FromString(request.SerializeToString()) == messages.request_type(
        x=[1.5, 2], city=["Nice"]
    )
    schema = message_json_schema(request_class.DESCRIPTOR)
    assert set(schema["properties"]) == {"x", "city"}


def test_two_versions_define_their_messages_side_by_side() -> None:
    first = build_messages(signature(TensorSpec("x", "float32", (None, 2))), "m", 1)
    second = build_messages(signature(TensorSpec("x", "str", (None,))), "m", 2)
    assert fields(first.request_type)["x"] != fields(second.request_type)["x"]


# --- the model, in-process ----------------------------------------------------------------


def model_for(data: bytes, tmp_path: Path, name: str = "m", description: str = "") -> OnnxModel:
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(data)
    version = Version(
        model=name,
        number=3,
        sha256="0" * 64,
        size=len(data),
        file_key="k",
        signature=Signature.from_graph(onnx.load_from_string(data).graph).to_json(),
        metadata=VersionMetadata(description=description),
        state=VersionState.READY,
        created=datetime.now(UTC),
    )
    model = onnx_model_class(version, path)(WorkerSettings())
    asyncio.run(model.load())
    return model


def run(model: OnnxModel, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    messages = [model.request_type(**request) for request in requests]
    responses = asyncio.run(model.process_batch(messages))
    return [
        json_format.MessageToDict(
            r, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        for r in responses
    ]


def test_digits_served_generically_matches_onnx_runtime(tmp_path: Path) -> None:
    model = model_for(DIGITS.read_bytes(), tmp_path, "digits", "8x8 digits")
    assert (model.name, model.version, model.description) == ("digits@3", "3", "8x8 digits")
    assert model.max_batch_size == 32 and not model.mark_running
    pixels = np.random.default_rng(0).random((5, 64), dtype=np.float32)
    responses = run(model, *({"pixels": row} for row in pixels))
    session = ort.InferenceSession(str(DIGITS), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"pixels": pixels})
    assert [int(r["label"]) for r in responses] == labels.tolist()
    assert np.allclose([r["probabilities"] for r in responses], probabilities)


def test_a_request_of_the_wrong_length_is_named(tmp_path: Path) -> None:
    model = model_for(DIGITS.read_bytes(), tmp_path, "digits")
    with pytest.raises(ValueError, match=r"'pixels' must hold 64 values .*got 3"):
        run(model, {"pixels": [0.0] * 64}, {"pixels": [0.0] * 3})


def test_a_description_is_made_when_the_version_has_none(tmp_path: Path) -> None:
    model = model_for(onnx_graphs.linear_graph(), tmp_path, "linear")
    assert model.description == (
        "linear@3 (ONNX): input_0 (3 float32) -> scores_1 (2 float32), total (float32)"
    )


def test_inputs_of_three_types_stack(tmp_path: Path) -> None:
    data = onnx_graphs.pipeline()
    model = model_for(data, tmp_path)
    rows = [(31.0, 2, "Paris"), (64.5, 5, "Lyon"), (22.0, 1, "Rome")]
    responses = run(model, *({"age": [a], "rooms": [r], "city": [c]} for a, r, c in rows))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    [expected] = session.run(
        None,
        {
            "age": np.array([[a] for a, _, _ in rows], np.float32),
            "rooms": np.array([[r] for _, r, _ in rows], np.int64),
            "city": np.array([[c] for _, _, c in rows], object),
        },
    )
    assert np.allclose([r["variable"] for r in responses], expected)


def test_a_dynamic_inner_dimension_takes_a_shape_and_runs_alone(tmp_path: Path) -> None:
    model = model_for(onnx_graphs.row_sums_graph(), tmp_path)
    assert model.max_batch_size == 1
    responses = run(
        model,
        {"x": [1, 2, 3, 4, 5, 6], "x_shape": [6]},
        {"x": [1, 2], "x_shape": [2]},  # a batch only if the user set INFERQ_MAX_BATCH_SIZE
    )
    assert responses == [
        {"sums": 21.0, "doubled": [2, 4, 6, 8, 10, 12], "doubled_shape": ["6"]},
        {"sums": 3.0, "doubled": [2, 4], "doubled_shape": ["2"]},
    ]
    with pytest.raises(ValueError, match=r"'x' must hold 3 values \(shape \[3\] from 'x_shape'\)"):
        run(model, {"x": [1, 2], "x_shape": [3]})
    with pytest.raises(ValueError, match=r"'x_shape' must be a shape like \['\?'\]"):
        run(model, {"x": [1, 2], "x_shape": [1, 2]})


def test_each_request_gets_its_own_rows_of_the_outputs(tmp_path: Path) -> None:
    model = model_for(onnx_graphs.linear_graph(), tmp_path)
    assert run(model, {"input_0": [1, 2, 3]}, {"input_0": [0, 0, 1]}) == [
        {"scores_1": [-6.5, 3.25], "total": -3.25},
        {"scores_1": [-2.5, -0.25], "total": -2.75},
    ]


def test_a_value_past_the_tensors_range_is_named(tmp_path: Path) -> None:
    model = model_for(onnx_graphs.flattening_graph(), tmp_path)
    with pytest.raises(ValueError, match=r"'x': Python integer 300 out of bounds for int8"):
        run(model, {"x": [1, 300]})


def test_an_output_whose_first_dimension_is_not_the_batch_is_an_error(tmp_path: Path) -> None:
    model = model_for(onnx_graphs.flattening_graph(), tmp_path)
    with pytest.raises(ValueError, match=r"output 'values' has 2 rows for 1 request\(s\)"):
        run(model, {"x": [1, 2]})
