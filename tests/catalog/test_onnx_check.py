"""`check_model`: the signature of a servable upload, and a refusal that says what to fix for
each kind of bad one, with the caller's process unharmed and nothing left behind. Every model
is made here: hand-built graphs, and scikit-learn models through skl2onnx."""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from catalog.onnx_check import allowed_domains, check_model
from catalog.signature import Signature, TensorSpec
from inferq.errors import InvalidModel, ModelTooLarge
from inferq.settings import CatalogSettings

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The temporary directory `check_model` works in; empty again after every check."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    yield scratch
    assert list(scratch.iterdir()) == []


def settings(**overrides: Any) -> CatalogSettings:
    return CatalogSettings(**overrides)


def refusal(data: bytes, **overrides: Any) -> InvalidModel:
    with pytest.raises(InvalidModel) as refused:
        check_model(data, settings(**overrides))
    return refused.value


def opset(version: int = 17) -> list[onnx.OperatorSetIdProto]:
    return [helper.make_opsetid("", version)]


def scaler(extra_nodes: list[onnx.NodeProto] | None = None, **graph: Any) -> onnx.ModelProto:
    """y = x * 2 for x of shape [batch, 3, any]; ``extra_nodes`` run after it."""
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    nodes = [helper.make_node("Mul", ["x", "two"], ["y"], name="double"), *(extra_nodes or [])]
    last = nodes[-1].output[0]
    return helper.make_model(
        helper.make_graph(
            nodes,
            "scaler",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, None])],
            [helper.make_tensor_value_info(last, TensorProto.FLOAT, ["batch", 3, None])],
            [two, *graph.pop("initializer", [])],
            **graph,
        ),
        opset_imports=opset(),
    )


def iris() -> tuple[np.ndarray, np.ndarray]:
    features, labels = load_iris(return_X_y=True)
    return features.astype(np.float32), labels


def test_a_hand_built_graph_gets_its_signature_with_its_dynamic_dimensions() -> None:
    signature = check_model(scaler().SerializeToString(), settings())

    assert signature == Signature(
        inputs=(TensorSpec("x", "float32", ("batch", 3, None)),),
        outputs=(TensorSpec("y", "float32", ("batch", 3, None)),),
    )
    assert signature.to_json()["inputs"] == [
        {"name": "x", "dtype": "float32", "shape": ["batch", 3, None]}
    ]
    assert Signature.from_json(signature.to_json()) == signature


def test_a_scikit_learn_regressor_is_valid() -> None:
    features, labels = iris()
    model = LinearRegression().fit(features, labels)

    signature = check_model(to_onnx(model, features[:1]).SerializeToString(), settings())

    assert [(s.dtype, s.shape) for s in signature.inputs] == [("float32", (None, 4))]
    assert [(s.dtype, s.shape) for s in signature.outputs] == [("float32", (None, 1))]


def test_a_classifier_exported_without_zipmap_is_valid() -> None:
    features, labels = iris()
    model = LogisticRegression(max_iter=500).fit(features, labels)
    exported = to_onnx(model, features[:1], options={id(model): {"zipmap": False}})

    signature = check_model(exported.SerializeToString(), settings())

    assert [(s.dtype, s.shape) for s in signature.outputs] == [
        ("int64", (None,)),
        ("float32", (None, 3)),
    ]


def test_a_classifier_with_zipmap_is_refused_with_how_to_export_it() -> None:
    features, labels = iris()
    model = LogisticRegression(max_iter=500).fit(features, labels)

    refused = refusal(to_onnx(model, features[:1]).SerializeToString())

    assert refused.details["reason"] == "zipmap"
    assert "options={id(model): {'zipmap': False}}" in refused.message
    assert refused.status_code == 422


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"this is not an onnx model", id="garbage"),
        pytest.param(scaler().SerializeToString()[:-7], id="truncated"),
        pytest.param(b"", id="empty"),
    ],
)
def test_a_file_that_is_not_a_whole_onnx_model_is_refused(data: bytes) -> None:
    refused = refusal(data)

    assert refused.details["reason"] in {"unreadable", "invalid"}
    assert "not" in refused.message and "ONNX" in refused.message


def external(location: str) -> onnx.ModelProto:
    weights = helper.make_tensor("weights", TensorProto.FLOAT, [3], [0.0] * 3)
    weights.ClearField("float_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": "12"}.items():
        weights.external_data.add(key=key, value=value)
    added = helper.make_node("Add", ["y", "weights"], ["z"], name="shift")
    return scaler([added], initializer=[weights])


def test_external_data_is_refused_before_anything_opens_it(tmp_path: Path) -> None:
    # A FIFO blocks whoever opens it until a writer comes: had anything opened it, the check
    # would have ended in its timeout, not in this refusal.
    fifo = tmp_path / "weights.bin"
    os.mkfifo(fifo)

    for location in ("../../etc/passwd", str(fifo), "weights.bin"):
        refused = refusal(external(location).SerializeToString(), validation_timeout_s=20)

        assert refused.details["reason"] == "external_data"
        assert f"{location!r}" in refused.message and "'weights'" in refused.message
        assert "save_as_external_data=False" in refused.message


def custom_op() -> onnx.ModelProto:
    model = scaler([helper.make_node("Fancy", ["y"], ["z"], name="fancy", domain="com.example")])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return model


def test_an_operator_of_a_domain_not_allowed_is_refused_naming_node_and_domain() -> None:
    refused = refusal(custom_op().SerializeToString())

    assert refused.details["reason"] == "operator_domain"
    assert "'fancy'" in refused.message and "'com.example'" in refused.message
    assert "INFERQ_ALLOWED_OPERATOR_DOMAINS" in refused.message


def test_an_allowed_domain_passes_that_check_and_the_load_still_must_succeed() -> None:
    allowed = "ai.onnx,com.example"

    refused = refusal(custom_op().SerializeToString(), allowed_operator_domains=allowed)

    assert refused.details["reason"] == "load_failed"
    assert "Fancy" in refused.message


def test_a_file_over_the_size_limit_is_refused_with_413() -> None:
    data = scaler().SerializeToString()
    check_model(data, settings(max_model_bytes=len(data)))

    with pytest.raises(ModelTooLarge) as refused:
        check_model(data, settings(max_model_bytes=len(data) - 1))

    assert refused.value.status_code == 413
    assert f"{len(data)} bytes" in refused.value.message
    assert "INFERQ_MAX_MODEL_BYTES" in refused.value.message


def huge_constant(elements: int) -> onnx.ModelProto:
    """A file of a few hundred bytes that needs ``elements`` floats of memory to load: a sparse
    constant with one value, which ONNX Runtime makes dense."""
    values = numpy_helper.from_array(np.array([1.0], np.float32), "ones")
    indices = numpy_helper.from_array(np.array([0], np.int64), "")
    sparse = helper.make_sparse_tensor(values, indices, [elements])
    return helper.make_model(
        helper.make_graph(
            [
                helper.make_node("Constant", [], ["ones"], sparse_value=sparse),
                helper.make_node("Add", ["x", "ones"], ["y"]),
            ],
            "huge",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [elements])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [elements])],
        ),
        opset_imports=opset(),
    )


def test_a_load_over_the_memory_limit_is_refused_and_the_caller_keeps_its_own() -> None:
    limit = 512 * MiB
    own_limit = resource.getrlimit(resource.RLIMIT_AS)
    check_model(huge_constant(1024).SerializeToString(), settings(validation_memory_bytes=limit))

    refused = refusal(
        huge_constant(256 * MiB).SerializeToString(),
        validation_memory_bytes=limit,  # 1 GiB
    )

    assert refused.details["reason"] in {"memory", "crashed"}
    assert "INFERQ_VALIDATION_MEMORY_BYTES" in refused.message
    assert resource.getrlimit(resource.RLIMIT_AS) == own_limit


def children() -> list[str]:
    """The command lines of this process's living children."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                found.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
            except FileNotFoundError:
                continue
    return found


def test_a_check_past_the_timeout_is_stopped_and_refused() -> None:
    refused = refusal(scaler().SerializeToString(), validation_timeout_s=0.05)

    assert refused.details["reason"] == "timeout"
    assert "INFERQ_VALIDATION_TIMEOUT_S" in refused.message
    assert not [command for command in children() if "catalog.onnx_check" in command]


def test_a_refusal_is_an_error_of_the_hierarchy_with_its_reason_on_the_wire() -> None:
    refused = refusal(custom_op().SerializeToString())

    assert refused.to_json()["error"]["type"] == "InvalidModel"
    assert refused.to_json()["error"]["reason"] == "operator_domain"


def test_a_checking_process_that_crashes_is_a_refusal_not_the_callers_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a file that crashes the parser or ONNX Runtime does to the child: a segfault.
    crash = "import os, sys; sys.stderr.write('Segmentation fault'); os.kill(os.getpid(), 11)"
    monkeypatch.setattr("catalog.onnx_check._CHILD_COMMAND", (sys.executable, "-c", crash))

    refused = refusal(scaler().SerializeToString())

    assert refused.details["reason"] == "crashed"
    assert "killed by signal 11: Segmentation fault" in refused.message


def test_the_empty_domain_in_the_setting_is_ai_onnx() -> None:
    only_empty = settings(allowed_operator_domains=" ,ai.onnx.ml")

    assert allowed_domains(only_empty) == {"ai.onnx", "ai.onnx.ml"}
    assert check_model(scaler().SerializeToString(), only_empty).inputs[0].name == "x"


def test_a_custom_operator_inside_a_subgraph_is_found() -> None:
    branch = helper.make_graph(
        [helper.make_node("Fancy", ["y"], ["b"], name="hidden", domain="com.example")],
        "branch",
        [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)],
    )
    condition = numpy_helper.from_array(np.array(True), "condition")
    choose = helper.make_node(
        "If", ["condition"], ["z"], name="choose", then_branch=branch, else_branch=branch
    )
    model = scaler([choose], initializer=[condition])

    refused = refusal(model.SerializeToString())

    assert refused.details["reason"] == "operator_domain"
    assert "'hidden'" in refused.message and "subgraph 'then_branch'" in refused.message


def test_an_input_that_is_not_a_tensor_is_refused() -> None:
    sequence = helper.make_tensor_sequence_value_info("xs", TensorProto.FLOAT, None)
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("SequenceLength", ["xs"], ["n"])],
            "count",
            [sequence],
            [helper.make_tensor_value_info("n", TensorProto.INT64, [])],
        ),
        opset_imports=opset(),
    )

    refused = refusal(model.SerializeToString())

    assert refused.details["reason"] == "non_tensor"
    assert "input 'xs' is a sequence;" in refused.message
