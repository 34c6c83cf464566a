"""A model's signature: its inputs and outputs, each a tensor with a name, an element type and a
shape, read from the ONNX graph and kept in the catalog as JSON.

The element type is a numpy dtype name (``float32``, ``int64``, ``bool`` ...; ``str`` for ONNX
string tensors, fed to ONNX Runtime as object arrays). A shape lists its dimensions: an int for
a fixed one, a str for a symbolic one (``"batch"``: dynamic, and equal wherever the name
recurs), None for a dynamic one without a name; the shape itself is None when not even the rank
is known. The JSON form::

    {"inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 4]}], "outputs": [...]}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx
from onnx import helper

Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model."""

    name: str
    dtype: str
    shape: tuple[Dim, ...] | None

    def to_json(self) -> dict[str, Any]:
        shape = None if self.shape is None else list(self.shape)
        return {"name": self.name, "dtype": self.dtype, "shape": shape}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        shape = data["shape"]
        if shape is not None:
            if not all(dim is None or isinstance(dim, int | str) for dim in shape):
                raise ValueError(f"tensor {data['name']!r}: a dimension is not int, str or null")
            shape = tuple(shape)
        return cls(name=str(data["name"]), dtype=str(data["dtype"]), shape=shape)


@dataclass(frozen=True)
class Signature:
    """The inputs and outputs of a model, in graph order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": [spec.to_json() for spec in self.outputs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Signature:
        return cls(
            inputs=tuple(TensorSpec.from_json(spec) for spec in data["inputs"]),
            outputs=tuple(TensorSpec.from_json(spec) for spec in data["outputs"]),
        )

    @classmethod
    def from_graph(cls, graph: onnx.GraphProto) -> Signature:
        """The signature of an ONNX graph. Its inputs are those a caller feeds: a graph input
        that an initializer also names (a default an older exporter made overridable) is left
        out, as ONNX Runtime leaves it out of a session's inputs. Raises ValueError for an
        input or output that is not a tensor of a known element type."""
        initialized = {tensor.name for tensor in graph.initializer}
        initialized |= {sparse.values.name for sparse in graph.sparse_initializer}
        return cls(
            inputs=tuple(_spec(v) for v in graph.input if v.name not in initialized),
            outputs=tuple(_spec(v) for v in graph.output),
        )


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        what = (kind or "value of no type").removesuffix("_type")
        raise ValueError(f"{value.name!r} is a {what}, not a tensor")
    tensor = value.type.tensor_type
    return TensorSpec(
        name=value.name, dtype=_dtype_name(value.name, tensor.elem_type), shape=_shape(tensor)
    )


def _dtype_name(name: str, elem_type: int) -> str:
    if elem_type == onnx.TensorProto.STRING:
        return "str"
    try:
        return str(helper.tensor_dtype_to_np_dtype(elem_type).name)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{name!r} has an element type numpy cannot hold ({elem_type})") from exc


def _shape(tensor: onnx.TypeProto.Tensor) -> tuple[Dim, ...] | None:
    if not tensor.HasField("shape"):
        return None
    return tuple(_dim(dim) for dim in tensor.shape.dim)


def _dim(dim: onnx.TensorShapeProto.Dimension) -> Dim:
    kind = dim.WhichOneof("value")
    if kind == "dim_value":
        return int(dim.dim_value)
    if kind == "dim_param" and dim.dim_param:
        return str(dim.dim_param)
    return None
