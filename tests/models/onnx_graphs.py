"""ONNX models made in the test itself, serialized: scikit-learn ones through skl2onnx (a
regressor, a classifier, a pipeline with inputs of different types) and hand-built graphs.
Each factory is deterministic, so a test can run it twice and get the same file."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CITIES = ["Lyon", "Paris", "Nice"]
OPSET = 17


def doubler(factor: float = 2.0, width: int = 3, domain: str = "") -> bytes:
    """y = x * factor, x and y float of shape [batch, width] (a dynamic batch dimension); the
    Mul node in operator ``domain`` (a domain the gateway may refuse)."""
    constant = numpy_helper.from_array(np.array(factor, np.float32), "factor")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "factor"], ["y"], domain=domain)],
        "doubler",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [constant],
    )
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def regressor() -> bytes:
    """LinearRegression on 4 features: ``x`` [N, 4] float -> ``variable`` [N, 1] float."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = x @ np.array([1.5, -2.0, 0.5, 3.0], np.float32) + 0.25
    model = LinearRegression().fit(x, y)
    onx = to_onnx(model, initial_types=[("x", FloatTensorType([None, 4]))], target_opset=OPSET)
    return onx.SerializeToString()


def classifier() -> bytes:
    """LogisticRegression on iris, without ZipMap: ``input`` [N, 4] float -> ``label`` [N]
    int64, ``probabilities`` [N, 3] float."""
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x.astype(np.float32), y)
    onx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    return onx.SerializeToString()


def pipeline() -> bytes:
    """A ColumnTransformer over three inputs of three types, then a regression:
    ``age`` [N, 1] float, ``rooms`` [N, 1] int64, ``city`` [N, 1] str -> ``variable`` [N, 1]."""
    rng = np.random.default_rng(1)
    n = 60
    age = rng.uniform(20, 80, size=(n, 1)).astype(np.float32)
    rooms = rng.integers(1, 6, size=(n, 1)).astype(np.int64)
    city = rng.choice(CITIES, size=(n, 1))
    y = 0.1 * age[:, 0] + 2.0 * rooms[:, 0] + (city[:, 0] == "Paris") * 5.0
    columns = ColumnTransformer(
        [
            ("numbers", StandardScaler(), [0, 1]),
            ("city", OneHotEncoder(handle_unknown="ignore"), [2]),
        ]
    )
    model = Pipeline([("columns", columns), ("regression", LinearRegression())])
    table = np.concatenate([age, rooms.astype(np.float32), city.astype(object)], axis=1)
    model.fit(table, y)
    onx = to_onnx(
        model,
        initial_types=[
            ("age", FloatTensorType([None, 1])),
            ("rooms", Int64TensorType([None, 1])),
            ("city", StringTensorType([None, 1])),
        ],
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    return onx.SerializeToString()


def linear_graph() -> bytes:
    """A hand-built graph with a dynamic batch dimension and names that are not identifiers:
    ``input:0`` [batch, 3] float -> ``scores.1`` [batch, 2] = x W + b, ``total`` [batch] the
    row sums of the scores."""
    weights = numpy_helper.from_array(
        np.array([[1.0, -1.0], [0.5, 2.0], [-3.0, 0.25]], np.float32), "W"
    )
    bias = numpy_helper.from_array(np.array([0.5, -0.5], np.float32), "b")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input:0", "W"], ["product"]),
            helper.make_node("Add", ["product", "b"], ["scores.1"]),
            helper.make_node("ReduceSum", ["scores.1", "axes"], ["total"], keepdims=0),
        ],
        "linear",
        [helper.make_tensor_value_info("input:0", TensorProto.FLOAT, ["batch", 3])],
        [
            helper.make_tensor_value_info("scores.1", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"]),
        ],
        [weights, bias, axes],
    )
    return _model(graph)


def row_sums_graph() -> bytes:
    """A hand-built graph with a dynamic inner dimension (not batchable): ``x`` [batch, n]
    double -> ``sums`` [batch] its row sums, ``doubled`` [batch, n] twice the input."""
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    two = numpy_helper.from_array(np.array(2.0, np.float64), "two")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x", "axes"], ["sums"], keepdims=0),
            helper.make_node("Mul", ["x", "two"], ["doubled"]),
        ],
        "row_sums",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", "n"])],
        [
            helper.make_tensor_value_info("sums", TensorProto.DOUBLE, ["batch"]),
            helper.make_tensor_value_info("doubled", TensorProto.DOUBLE, ["batch", "n"]),
        ],
        [axes, two],
    )
    return _model(graph)


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def flattening_graph() -> bytes:
    """A graph whose output's first dimension is dynamic but not the batch's: ``x`` [batch, 2]
    int8 -> ``values`` [n] all of x's values, as int32."""
    shape = numpy_helper.from_array(np.array([-1], np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "shape"], ["flat"]),
            helper.make_node("Cast", ["flat"], ["values"], to=TensorProto.INT32),
        ],
        "flattening",
        [helper.make_tensor_value_info("x", TensorProto.INT8, ["batch", 2])],
        [helper.make_tensor_value_info("values", TensorProto.INT32, ["n"])],
        [shape],
    )
    return _model(graph)
