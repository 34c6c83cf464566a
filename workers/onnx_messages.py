"""The request and response messages of an ONNX model, derived from its signature
(`catalog.signature.Signature`), so that any stored version is served with no code.

Each input tensor is one field of the request, each output one field of the response. A
request is ONE example:

- a tensor whose first dimension is dynamic (``["batch", 64]``) is *batched*: the field holds
  one example, flattened row-major (``{"pixels": [64 floats]}``), or a singular scalar when
  an example is a scalar (``["batch"]``); the worker stacks requests along that dimension;
- a tensor whose other dimensions are dynamic too (``["batch", "seq"]``), or whose rank is
  unknown, comes with a ``<field>_shape`` field (repeated int64): the example's shape, or
  for a tensor of unknown rank the whole tensor's (empty: a vector of all the values);
- any other tensor (no dynamic first dimension: ``[1, 3]``, ``[]``) is given whole,
  flattened, and the model runs one request at a time.

Responses mirror this: a batched output gives the request's own slice. A model batches
(stacks several requests into one run) only when every input and every output is batched and
every input's example shape is fixed.

Field names are the ONNX names made proto identifiers (``input:0`` -> ``input_0``, ``1`` ->
``t_1``), unique within their message; ``json_name`` is the field name, so JSON uses the
same names. The messages live in a descriptor pool of their own, in the package
``inferq.onnx.<model>.v<N>``, so two versions never clash.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from catalog.signature import Signature, TensorSpec

FieldProto = descriptor_pb2.FieldDescriptorProto

#: The field type of each signature dtype (a numpy dtype name, or "str").
FIELD_TYPES: dict[str, int] = {
    "float32": FieldProto.TYPE_FLOAT,
    "float16": FieldProto.TYPE_FLOAT,
    "float64": FieldProto.TYPE_DOUBLE,
    "int8": FieldProto.TYPE_INT32,
    "int16": FieldProto.TYPE_INT32,
    "int32": FieldProto.TYPE_INT32,
    "uint8": FieldProto.TYPE_UINT32,
    "uint16": FieldProto.TYPE_UINT32,
    "uint32": FieldProto.TYPE_UINT32,
    "int64": FieldProto.TYPE_INT64,
    "uint64": FieldProto.TYPE_UINT64,
    "bool": FieldProto.TYPE_BOOL,
    "str": FieldProto.TYPE_STRING,
}
SHAPE_SUFFIX = "_shape"


@dataclasses.dataclass(frozen=True)
class TensorField:
    """How one tensor is carried in its message."""

    #: The tensor's name in the graph, as ONNX Runtime feeds and returns it.
    onnx_name: str
    #: The field holding its values.
    field: str
    #: numpy dtype name ("str" for strings, fed as an object array).
    dtype: str
    #: The tensor's shape in the signature (None: rank unknown).
    shape: tuple[int | str | None, ...] | None
    #: Whether the first dimension is dynamic: the message holds one example of it.
    batched: bool
    #: The field giving the shape (of the example, or of the whole tensor), when it varies.
    shape_field: str | None

    @property
    def example_shape(self) -> tuple[int | str | None, ...] | None:
        """The shape the message holds: an example's, or the whole tensor's."""
        if self.shape is None:
            return None
        return self.shape[1:] if self.batched else self.shape

    @property
    def fixed_shape(self) -> tuple[int, ...] | None:
        """`example_shape` when every dimension of it is fixed, else None."""
        shape = self.example_shape
        if shape is None or not all(isinstance(dim, int) for dim in shape):
            return None
        return tuple(dim for dim in shape if isinstance(dim, int))

    @property
    def count(self) -> int | None:
        """How many values the field holds, when that is fixed."""
        fixed = self.fixed_shape
        return None if fixed is None else math.prod(fixed)

    @property
    def scalar(self) -> bool:
        """Whether the field is singular: the message holds one value, shape ``()``."""
        return self.fixed_shape == ()

    @property
    def stackable(self) -> bool:
        """Whether requests stack along the first dimension with no shape given."""
        return self.batched and self.fixed_shape is not None

    def numpy_dtype(self) -> np.dtype:  # type: ignore[type-arg]
        return np.dtype(object) if self.dtype == "str" else np.dtype(self.dtype)


@dataclasses.dataclass(frozen=True)
class OnnxMessages:
    """The message classes of one model version, and how each tensor maps to its fields."""

    request_type: type[Message]
    response_type: type[Message]
    inputs: tuple[TensorField, ...]
    outputs: tuple[TensorField, ...]

    @property
    def batchable(self) -> bool:
        """Whether several requests can run as one batch (see the module docstring)."""
        return all(f.stackable for f in self.inputs) and all(f.batched for f in self.outputs)


def identifier(name: str) -> str:
    """``name`` made a protobuf identifier: letters, digits and ``_``, starting with a letter."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return cleaned if re.match(r"[A-Za-z]", cleaned) else f"t_{cleaned}"


def tensor_fields(specs: tuple[TensorSpec, ...]) -> tuple[TensorField, ...]:
    """The fields of one message: one per tensor, plus ``<field>_shape`` where the shape varies;
    names unique (a clash gets ``_2``, ``_3`` ...). Raises ValueError for a dtype no field holds."""
    for spec in specs:
        if spec.dtype not in FIELD_TYPES:
            raise ValueError(
                f"tensor {spec.name!r} has element type {spec.dtype}, which the generic ONNX "
                f"worker cannot carry (it takes {', '.join(FIELD_TYPES)})"
            )
    taken: set[str] = set()

    def claim(wanted: str) -> str:
        name, n = wanted, 1
        while name in taken:
            n += 1
            name = f"{wanted}_{n}"
        taken.add(name)
        return name

    # Tensor fields first, so a tensor keeps its own name even where a `_shape` would take it.
    names = [claim(identifier(spec.name)) for spec in specs]
    fields = []
    for spec, name in zip(specs, names, strict=True):
        first = spec.shape[0] if spec.shape else 0  # no first dimension: not batched
        batched = not isinstance(first, int)
        tensor = TensorField(spec.name, name, spec.dtype, spec.shape, batched, shape_field=None)
        if tensor.fixed_shape is None:
            tensor = dataclasses.replace(tensor, shape_field=claim(f"{name}{SHAPE_SUFFIX}"))
        fields.append(tensor)
    return tuple(fields)


def package_name(model: str, number: int) -> str:
    """``inferq.onnx.<model>.v<N>``, the model's name made an identifier."""
    return f"inferq.onnx.{identifier(model)}.v{number}"


def build_messages(signature: Signature, model: str, number: int) -> OnnxMessages:
    """The request and response classes of version ``number`` of ``model``, in a pool of their
    own (``<package>.Request``, ``<package>.Response``)."""
    inputs, outputs = tensor_fields(signature.inputs), tensor_fields(signature.outputs)
    package = package_name(model, number)
    file = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}.proto", package=package, syntax="proto3"
    )
    file.message_type.append(_message("Request", inputs))
    file.message_type.append(_message("Response", outputs))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    request = GetMessageClass(pool.FindMessageTypeByName(f"{package}.Request"))
    response = GetMessageClass(pool.FindMessageTypeByName(f"{package}.Response"))
    return OnnxMessages(request, response, inputs, outputs)


def _message(name: str, fields: tuple[TensorField, ...]) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=name)
    number = 0

    def add(field: str, kind: int, repeated: bool) -> None:
        nonlocal number
        number += 1
        label = FieldProto.LABEL_REPEATED if repeated else FieldProto.LABEL_OPTIONAL
        message.field.append(
            FieldProto(name=field, number=number, type=kind, label=label, json_name=field)  # type: ignore[arg-type]
        )

    for tensor in fields:
        add(tensor.field, FIELD_TYPES[tensor.dtype], repeated=not tensor.scalar)
        if tensor.shape_field:
            add(tensor.shape_field, FieldProto.TYPE_INT64, repeated=True)
    return message
