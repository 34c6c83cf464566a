"""The one mapping between Open Inference Protocol tensors and a model's messages, for every
door that speaks the protocol (REST `api_service.routes.v2`, gRPC `api_service.grpc`).

Tensors:

- `Tensor` — a named tensor: its OIP ``datatype`` (``FP32``, ``INT64``, ``BYTES`` ...) and a
  numpy ``array`` of that shape (``BYTES``: an object array of ``bytes``).
- `tensor_from_values(name, datatype, shape, values)` — from JSON ``data`` (flat or nested
  row-major) or gRPC typed contents (a flat list); `tensor_from_bytes(name, datatype, shape,
  raw)` — from raw little-endian bytes (the binary tensor data extension, gRPC
  ``raw_input_contents``; ``BYTES`` elements each a 4-byte little-endian length, then the
  bytes). Both check the datatype, the shape and the size, and raise `InvalidRequest` naming
  the tensor (doors answer 400 / INVALID_ARGUMENT).
- ``Tensor.to_bytes()`` (raw, as above) and ``Tensor.json_data()`` (flat row-major values for
  JSON ``data``) for outputs.

Models: `onnx_tensors(signature)` for a generic ONNX version (its catalog signature), and
`class_tensors(request_class, response_class)` for a class model, give a `ModelTensors`:
``inputs``/``outputs`` (`TensorInfo`: name, datatype, shape with -1 for a variable dimension,
as model metadata shows them), ``requests(tensors) -> [request message, ...]`` and
``outputs_of(responses, names) -> [Tensor, ...]``. An ONNX mapping built from the signature
alone answers metadata; ``bind(request_class, response_class)`` (the live record's classes)
gives the one that also builds messages.

The mapping. The first dimension of a batched tensor is the batch: an infer request of N rows
becomes N request messages (N tasks), whose responses are gathered back into tensors of N rows.

- Generic ONNX version (its messages: `workers.onnx_messages`, one field per tensor, a request
  is ONE example): tensor names are the ONNX names, datatypes the graph's, shapes the graph's
  (a symbolic or unknown dimension is -1; a tensor of unknown rank is ``[-1]`` and takes any
  shape). A tensor whose first dimension is dynamic is batched: row i goes to request i
  (flattened into its field; its shape into ``<field>_shape`` where the example's shape
  varies). Any other tensor is given whole, in every request. Outputs: a batched output's rows
  are stacked, one per request; an output that is not batched comes from a request of one row.
- Class model (protobuf messages of its own): each field of the request message is an input
  tensor named after the field, each field of the response an output. A repeated field is a
  tensor of shape ``[-1, -1]`` (rows of values, row i to request i), a singular field one of
  shape ``[-1]`` (a value per request). Field types: float FP32, double FP64, int32/sint32/
  sfixed32 INT32, int64/sint64/sfixed64 INT64, uint32/fixed32 UINT32, uint64/fixed64 UINT64,
  bool BOOL, string and bytes BYTES. A message with a field of another kind (a message, a map,
  an enum) does not map: `InvalidRequest` saying so (use the native ``POST /predict``).

Every input is required, with the exact datatype; at most `MAX_ROWS` rows per request.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from catalog.signature import Signature
from catalog.signature import TensorSpec as SignatureTensor
from inferq.errors import InvalidRequest

Array = np.ndarray  # type: ignore[type-arg]

#: Most rows (tasks) one infer request may carry.
MAX_ROWS = 4096

#: The OIP datatypes and the numpy dtype of each (little-endian on the wire).
DATATYPES: dict[str, np.dtype] = {  # type: ignore[type-arg]
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
#: A signature's dtype (a numpy dtype name, or "str") as an OIP datatype.
SIGNATURE_DATATYPES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "str": "BYTES",
}
_F = FieldDescriptor
#: A protobuf field type as an OIP datatype.
FIELD_DATATYPES: dict[int, str] = {
    _F.TYPE_FLOAT: "FP32",
    _F.TYPE_DOUBLE: "FP64",
    _F.TYPE_INT32: "INT32",
    _F.TYPE_SINT32: "INT32",
    _F.TYPE_SFIXED32: "INT32",
    _F.TYPE_INT64: "INT64",
    _F.TYPE_SINT64: "INT64",
    _F.TYPE_SFIXED64: "INT64",
    _F.TYPE_UINT32: "UINT32",
    _F.TYPE_FIXED32: "UINT32",
    _F.TYPE_UINT64: "UINT64",
    _F.TYPE_FIXED64: "UINT64",
    _F.TYPE_BOOL: "BOOL",
    _F.TYPE_STRING: "BYTES",
    _F.TYPE_BYTES: "BYTES",
}


# --- tensors ------------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1 us, and one runs per tensor
class Tensor:
    """A named tensor: ``array`` has its shape and the numpy dtype of ``datatype``."""

    name: str
    datatype: str
    array: Array

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape  # type: ignore[no-any-return]

    def to_bytes(self) -> bytes:
        """The raw contents: little-endian values, row-major; ``BYTES`` length-prefixed."""
        if self.datatype == "BYTES":
            return b"".join(
                struct.pack("<I", len(item)) + item for item in map(_as_bytes, self.array.flat)
            )
        return self.array.astype(DATATYPES[self.datatype].newbyteorder("<"), copy=False).tobytes()

    def json_data(self) -> Any:
        """Flat row-major values for JSON ``data``: a 1-D array (orjson writes numpy arrays
        itself) or, for ``BYTES`` and ``FP16``, a list (``BYTES`` as UTF-8 text)."""
        if self.datatype == "BYTES":
            return [_as_bytes(item).decode("utf-8", "replace") for item in self.array.flat]
        if self.datatype == "FP16":
            return self.array.ravel().astype(np.float32).tolist()
        return np.ascontiguousarray(self.array.ravel())


def _as_bytes(item: Any) -> bytes:
    return item if isinstance(item, bytes) else str(item).encode()


def _datatype(name: str, datatype: Any) -> np.dtype:  # type: ignore[type-arg]
    dtype = DATATYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise InvalidRequest(
            f"tensor {name!r}: unknown datatype {datatype!r} (one of {', '.join(DATATYPES)})"
        )
    return dtype


def _shape(name: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list | tuple) or not all(
        [isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape]
    ):
        raise InvalidRequest(f"tensor {name!r}: shape must be a list of sizes >= 0, not {shape!r}")
    return tuple(shape)


def tensor_from_values(name: str, datatype: str, shape: Sequence[int], values: Any) -> Tensor:
    """The tensor from JSON ``data`` (flat or nested, row-major) or a flat list; raises
    `InvalidRequest` for an unknown datatype, a bad shape, a count that does not match the
    shape, or a value the datatype cannot hold."""
    dtype = _datatype(name, datatype)
    dims = _shape(name, shape)
    count = math.prod(dims)
    if datatype == "BYTES":
        flat = _flatten(name, values)
        if not all(isinstance(v, str | bytes) for v in flat):
            raise InvalidRequest(f"tensor {name!r}: BYTES data must be strings")
        array = np.empty(len(flat), dtype=object)
        array[:] = [v.encode() if isinstance(v, str) else v for v in flat]
    else:
        array = _numbers(name, datatype, dtype, values)
    if array.size != count:
        raise InvalidRequest(
            f"tensor {name!r}: shape {list(dims)} holds {count} values, data has {array.size}"
        )
    return Tensor(name, datatype, array.reshape(dims))


def _flatten(name: str, values: Any) -> list[Any]:
    if not isinstance(values, list | tuple):
        return [values]
    flat: list[Any] = []
    stack = [iter(values)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list | tuple):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _numbers(name: str, datatype: str, dtype: np.dtype, values: Any) -> Array:  # type: ignore[type-arg]
    try:
        given = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        raise InvalidRequest(
            f"tensor {name!r}: data is not a rectangular array of {datatype} values"
        ) from None
    kind = given.dtype.kind
    if dtype.kind in "iu" and kind in "fO" and given.size:
        given = _exact_integers(name, datatype, dtype, values)  # past int64, mixed with uint64
        kind = given.dtype.kind
    if given.size == 0:
        return given.astype(dtype).ravel()
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidRequest(f"tensor {name!r}: BOOL data must be true or false")
        return given.ravel()
    if kind not in "iuf" or (kind == "f" and dtype.kind != "f"):
        what = {"b": "booleans", "f": "fractions", "U": "strings"}.get(kind, "not numbers")
        raise InvalidRequest(f"tensor {name!r}: {datatype} data holds {what}")
    if dtype.kind == "f":
        # A value casts to a finite one when its magnitude is below the datatype's limit, so
        # the given values are checked and the cast cannot overflow: no np.errstate, whose
        # context variable costs more than the check in a server's task. NaN fails both.
        # The sum of squares (one BLAS call, ~0.4 us; min and max take ~1.6) bounds every
        # value; only where it does not is each value looked at.
        limit = _FLOAT_LIMITS[datatype]
        if not (kind == "f" and np.vdot(given, given) < limit * limit) and not (
            -limit < _min(given, None) and _max(given, None) < limit
        ):
            raise InvalidRequest(f"tensor {name!r}: a value is out of {datatype}'s range")
        return given.astype(dtype).ravel()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if _min(given, None) < info.min or _max(given, None) > info.max:
            raise InvalidRequest(
                f"tensor {name!r}: a value is out of {datatype}'s range [{info.min}, {info.max}]"
            )
    return given.astype(dtype).ravel()


_min, _max = np.minimum.reduce, np.maximum.reduce
#: The magnitude from which a value rounds to infinity: the largest value and half a step.
_FLOAT_LIMITS = {"FP16": 65504.0 + 16.0, "FP32": float(np.finfo(np.float32).max) + 2.0**103}
_FLOAT_LIMITS["FP64"] = math.inf


def _exact_integers(name: str, datatype: str, dtype: np.dtype, values: Any) -> Array:  # type: ignore[type-arg]
    """Integers numpy did not hold as integers (values past int64's range, or int64 and
    uint64 ones mixed): each must be a Python int in the datatype's range."""
    flat = _flatten(name, values)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        raise InvalidRequest(f"tensor {name!r}: {datatype} data holds values that are not integers")
    try:
        return np.array(flat, dtype=dtype)
    except OverflowError:
        info = np.iinfo(dtype)
        raise InvalidRequest(
            f"tensor {name!r}: a value is out of {datatype}'s range [{info.min}, {info.max}]"
        ) from None


def tensor_from_bytes(name: str, datatype: str, shape: Sequence[int], raw: bytes) -> Tensor:
    """The tensor from raw little-endian bytes; raises `InvalidRequest` where their length
    does not match the shape (or, for ``BYTES``, the element lengths overrun or leave bytes)."""
    dtype = _datatype(name, datatype)
    dims = _shape(name, shape)
    count = math.prod(dims)
    if datatype == "BYTES":
        return Tensor(name, datatype, _bytes_elements(name, raw, count).reshape(dims))
    wanted = count * dtype.itemsize
    if len(raw) != wanted:
        raise InvalidRequest(
            f"tensor {name!r}: shape {list(dims)} of {datatype} takes {wanted} bytes, "
            f"its binary data has {len(raw)}"
        )
    array = np.frombuffer(raw, dtype.newbyteorder("<")).astype(dtype, copy=False)
    if datatype == "BOOL" and count and np.frombuffer(raw, np.uint8).max() > 1:
        raise InvalidRequest(f"tensor {name!r}: BOOL bytes must be 0 or 1")
    return Tensor(name, datatype, array.reshape(dims))


def _bytes_elements(name: str, raw: bytes, count: int) -> Array:
    items = np.empty(count, dtype=object)
    view, at = memoryview(raw), 0
    for i in range(count):
        if at + 4 > len(raw):
            raise InvalidRequest(
                f"tensor {name!r}: binary data ends at element {i} of {count} BYTES elements"
            )
        (size,) = struct.unpack_from("<I", raw, at)
        if at + 4 + size > len(raw):
            raise InvalidRequest(
                f"tensor {name!r}: element {i} says {size} bytes, past the binary data's end"
            )
        items[i] = bytes(view[at + 4 : at + 4 + size])
        at += 4 + size
    if at != len(raw):
        raise InvalidRequest(
            f"tensor {name!r}: {len(raw) - at} bytes left after its {count} BYTES elements"
        )
    return items


# --- models -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """An input or output as model metadata shows it (-1: a variable dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class _Binding:
    """How one tensor is carried in its message's fields."""

    info: TensorInfo
    field: str | None  # None: not bound to messages yet (metadata only)
    #: The shape each message holds (its row's, or the whole tensor's); None: any (with a
    #: shape field); a -1 dimension: any size, given in the shape field.
    example: tuple[int, ...] | None
    batched: bool  # first dimension: the rows, one per message
    scalar: bool  # the field is singular: one value per message
    shape_field: str | None = None
    string: bool = False  # a string field (text), not bytes
    #: A repeated float or double field: its number and the little-endian dtype of its packed
    #: values, written straight from the tensor's bytes (no Python float per value).
    packed: tuple[int, str] | None = None

    @property
    def name(self) -> str:
        return self.info.name

    @cached_property
    def fixed_dims(self) -> tuple[tuple[int, int], ...]:
        """The dimensions of a fixed size, as (index, size)."""
        return tuple((i, dim) for i, dim in enumerate(self.info.shape) if dim != -1)

    @cached_property
    def packed_tag(self) -> tuple[bytes, np.dtype]:  # type: ignore[type-arg]
        """A packed field's tag (its number, wire type 2) and the dtype of its values."""
        assert self.packed is not None
        number, dtype = self.packed
        return _varint(number << 3 | 2), np.dtype(dtype)


@dataclass(frozen=True)
class ModelTensors:
    """How a model's request and response messages map to tensors (see the module
    docstring): its metadata (``inputs``, ``outputs``, ``platform``) and, when bound to its
    message classes, the conversions."""

    platform: str
    input_bindings: tuple[_Binding, ...]
    output_bindings: tuple[_Binding, ...]
    request_class: type[Message] | None = None
    response_class: type[Message] | None = None

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        return tuple(b.info for b in self.input_bindings)

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        return tuple(b.info for b in self.output_bindings)

    @cached_property
    def input_names(self) -> frozenset[str]:
        return frozenset(b.name for b in self.input_bindings)

    @cached_property
    def outputs_by_name(self) -> dict[str, _Binding]:
        return {b.name: b for b in self.output_bindings}

    def bind(self, request_class: type[Message], response_class: type[Message]) -> ModelTensors:
        """The mapping with its fields, from the messages a worker registered; an
        `InvalidRequest` where they do not follow the signature."""
        return ModelTensors(
            self.platform,
            _bind(self.input_bindings, request_class.DESCRIPTOR),
            _bind(self.output_bindings, response_class.DESCRIPTOR),
            request_class,
            response_class,
        )

    def requests(self, tensors: Sequence[Tensor]) -> list[Message]:
        """The request messages of an infer request's input tensors: one per row."""
        assert self.request_class is not None, "bind() the mapping first"
        return [self.request_class.FromString(body) for body in self.request_bodies(tensors)]

    def request_bodies(self, tensors: Sequence[Tensor]) -> list[bytes]:
        """`requests`, serialized (binary protobuf, what `Gateway.predict` takes): float and
        double tensors are written as packed fields straight from their bytes."""
        assert self.request_class is not None, "bind() the mapping first"
        given = {t.name: t for t in tensors}
        if len(given) != len(tensors):
            raise InvalidRequest("an input tensor is given twice")
        wanted = self.input_names
        if given.keys() != wanted:
            unknown = sorted(given.keys() - wanted)
            if unknown:
                raise InvalidRequest(
                    f"unknown input(s) {', '.join(unknown)}; the model takes {_names(wanted)}"
                )
            missing = [b.name for b in self.input_bindings if b.name not in given]
            raise InvalidRequest(f"missing input(s) {', '.join(missing)}")
        rows = None
        columns: list[tuple[_Binding, list[Any], list[int] | None]] = []
        packed: list[tuple[_Binding, list[bytes]]] = []
        for binding in self.input_bindings:
            tensor = given[binding.name]
            if tensor.datatype != binding.info.datatype:
                raise InvalidRequest(
                    f"input {binding.name!r} is {binding.info.datatype}, not {tensor.datatype}"
                )
            _check_shape(binding, tensor.shape)
            if binding.batched:
                n = tensor.shape[0]
                if rows is not None and n != rows:
                    raise InvalidRequest(
                        f"inputs have {rows} and {n} rows: every batched input has one per request"
                    )
                rows = n
                if n == 0:
                    raise InvalidRequest(f"input {binding.name!r} has no rows")
                if n > MAX_ROWS:
                    raise InvalidRequest(f"{n} rows in one request; at most {MAX_ROWS}")
            if binding.packed is not None:
                packed.append((binding, _packed_rows(binding, tensor)))
                if binding.shape_field is not None:
                    columns.append((binding, [], _held_shape(binding, tensor)))
            else:
                columns.append((binding, *_field_values(binding, tensor)))
        rows = 1 if rows is None else rows
        if not columns:  # packed fields only (a class model's float rows): no message to build
            return [
                b"".join(parts[i] if binding.batched else parts[0] for binding, parts in packed)
                for i in range(rows)
            ]
        fields: list[dict[str, Any]] = [{} for _ in range(rows)]
        for binding, values, shape in columns:
            assert binding.field is not None
            for i, request in enumerate(fields):
                if values:
                    request[binding.field] = values[i] if binding.batched else values[0]
                if binding.shape_field is not None:
                    request[binding.shape_field] = shape
        try:
            bodies = [self.request_class(**request).SerializeToString() for request in fields]
        except (TypeError, ValueError) as error:
            raise InvalidRequest(f"the inputs do not fit the model's request: {error}") from None
        if not packed:
            return bodies
        # A message's fields may come in any order, each once: the packed ones go after.
        return [
            b"".join(
                [body, *(parts[i] if binding.batched else parts[0] for binding, parts in packed)]
            )
            for i, body in enumerate(bodies)
        ]

    def outputs_of(
        self, responses: Sequence[Message], names: Sequence[str] | None = None
    ) -> list[Tensor]:
        """The output tensors gathered from the responses (one per row), those named (in that
        order; None: all)."""
        bindings = self.outputs_by_name
        if names is None:
            chosen = self.output_bindings
        else:
            unknown = [name for name in names if name not in bindings]
            if unknown:
                raise InvalidRequest(
                    f"unknown output(s) {', '.join(unknown)}; the model gives {_names(bindings)}"
                )
            chosen = tuple(bindings[name] for name in names)
        return [_gather(binding, responses) for binding in chosen]


def _names(names: Any) -> str:
    return ", ".join(sorted(names)) or "none"


def _check_shape(binding: _Binding, shape: tuple[int, ...]) -> None:
    wanted = binding.info.shape
    if binding.example is None and not binding.batched:
        return  # unknown rank: any shape
    if len(shape) != len(wanted) or any(shape[i] != size for i, size in binding.fixed_dims):
        raise InvalidRequest(
            f"input {binding.name!r} has shape {list(shape)}; the model takes {list(wanted)} "
            "(-1: any size)"
        )


def _held_shape(binding: _Binding, tensor: Tensor) -> list[int]:
    """The shape one message holds: a row's, or the whole tensor's."""
    return list(tensor.shape[1:] if binding.batched else tensor.shape)


def _packed_rows(binding: _Binding, tensor: Tensor) -> list[bytes]:
    """The packed field of each row (or of the whole tensor): its tag, its length, the values'
    little-endian bytes; nothing for an empty one (proto3 writes no empty field)."""
    tag, dtype = binding.packed_tag
    array = tensor.array
    raw = (array if array.dtype == dtype else array.astype(dtype)).tobytes()  # row-major
    rows = array.shape[0] if binding.batched else 1
    size = len(raw) // rows if rows else 0
    if not size:
        return [b""] * rows
    prefix = tag + _varint(size)
    if rows == 1:
        return [prefix + raw]
    return [prefix + raw[i * size : (i + 1) * size] for i in range(rows)]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field_values(binding: _Binding, tensor: Tensor) -> tuple[list[Any], list[int] | None]:
    """The field's value for each row (batched) or for the whole tensor; the shape each holds."""
    array = tensor.array
    if binding.string:
        try:
            text = [item.decode("utf-8") for item in array.flat]
        except UnicodeDecodeError:
            raise InvalidRequest(f"input {binding.name!r}: BYTES must be UTF-8 text") from None
        array = np.array(text, dtype=object).reshape(array.shape)
    if binding.batched:
        rows = array.shape[0]
        shape = list(array.shape[1:])
        if binding.scalar:
            return array.reshape(rows).tolist(), shape
        return array.reshape(rows, -1).tolist(), shape
    if binding.scalar:
        return [array.reshape(()).item()], []
    return [array.ravel().tolist()], list(array.shape)


def _gather(binding: _Binding, responses: Sequence[Message]) -> Tensor:
    assert binding.field is not None
    datatype = binding.info.datatype
    dtype = DATATYPES[datatype]
    field = binding.field
    if not binding.batched:
        if len(responses) != 1:
            raise InvalidRequest(
                f"output {binding.name!r} is not batched: it comes from a request of one row, "
                f"not {len(responses)}"
            )
        [response] = responses
        shape = _response_shape(binding, response)
        values = getattr(response, field)
        if binding.scalar or dtype.kind == "O":
            array = _column(dtype, [values] if binding.scalar else values, math.prod(shape))
        else:
            array = _numbers_of(dtype, values)
            if array.size != math.prod(shape):
                raise InvalidRequest(
                    f"output {binding.name!r}: the response holds {array.size} values where "
                    f"{math.prod(shape)} were due"
                )
        return Tensor(binding.name, datatype, array.reshape(shape))
    n = len(responses)
    if n == 1:
        shape = _response_shape(binding, responses[0])
    else:
        shapes = {_response_shape(binding, response) for response in responses}
        if len(shapes) > 1:
            raise InvalidRequest(
                f"output {binding.name!r} has rows of different shapes ({sorted(shapes)}): "
                "they make no tensor; ask one row per request"
            )
        [shape] = shapes
    if binding.scalar:
        array = _column(dtype, [getattr(response, field) for response in responses], n)
    elif dtype.kind != "O":  # a repeated number field reads as an array at once
        rows = [_numbers_of(dtype, getattr(response, field)) for response in responses]
        array = rows[0] if n == 1 else np.concatenate(rows)
        if array.size != n * math.prod(shape):
            raise InvalidRequest(
                f"output {binding.name!r}: the responses hold {array.size} values where "
                f"{n * math.prod(shape)} were due"
            )
    else:
        column = list(itertools.chain.from_iterable(getattr(r, field) for r in responses))
        array = _column(dtype, column, n * math.prod(shape))
    return Tensor(binding.name, datatype, array.reshape(n, *shape))


def _numbers_of(dtype: np.dtype, values: Any) -> Array:  # type: ignore[type-arg]
    """A repeated number field as an array of ``dtype`` (protobuf's containers convert at C
    speed: ~0.1 ms for 1M floats, against ~30 ms value by value; but that costs ~2 us at
    any size, where a few values are read one by one in 0.6 us)."""
    if dtype == np.float16:
        return np.asarray(values, dtype=np.float32).astype(np.float16)
    if len(values) <= _FEW:
        return np.fromiter(values, dtype, len(values))
    return np.asarray(values, dtype=dtype)


_FEW = 32  # values below which reading them one by one is the faster (~3 us either way)


def _response_shape(binding: _Binding, response: Message) -> tuple[int, ...]:
    if binding.shape_field is not None:  # the worker wrote the shape
        return tuple(getattr(response, binding.shape_field))
    if binding.example is not None and -1 not in binding.example:
        return binding.example
    # A class model's repeated field: as many values as it holds.
    return () if binding.scalar else (len(getattr(response, binding.field or "")),)


def _column(dtype: np.dtype, values: Any, count: int) -> Array:  # type: ignore[type-arg]
    if count != len(values):
        raise InvalidRequest(f"a response holds {len(values)} values where {count} were due")
    if dtype.kind == "O":
        array = np.empty(count, dtype=object)
        array[:] = [v.encode() if isinstance(v, str) else v for v in values]
        return array
    if dtype == np.float16:
        return np.fromiter(values, np.float32, count).astype(np.float16)
    return np.fromiter(values, dtype, count)


# --- the two kinds of model ---------------------------------------------------------------


def onnx_tensors(signature: Signature | dict[str, Any]) -> ModelTensors:
    """The mapping of a generic ONNX version, from its catalog signature (metadata only until
    `ModelTensors.bind`)."""
    if isinstance(signature, dict):
        signature = Signature.from_json(signature)
    return ModelTensors(
        "onnxruntime_onnx",
        tuple(map(_onnx_binding, signature.inputs)),
        tuple(map(_onnx_binding, signature.outputs)),
    )


def _onnx_binding(spec: SignatureTensor) -> _Binding:
    datatype = SIGNATURE_DATATYPES.get(spec.dtype)
    if datatype is None:
        raise InvalidRequest(f"tensor {spec.name!r} has element type {spec.dtype}: no datatype")
    if spec.shape is None:
        info = TensorInfo(spec.name, datatype, (-1,))
        return _Binding(info, None, None, batched=False, scalar=False, string=spec.dtype == "str")
    dims = tuple(dim if isinstance(dim, int) else -1 for dim in spec.shape)
    batched = bool(spec.shape) and not isinstance(spec.shape[0], int)
    example = dims[1:] if batched else dims
    return _Binding(
        TensorInfo(spec.name, datatype, dims),
        None,
        example,
        batched=batched,
        scalar=example == (),
        string=spec.dtype == "str",
    )


def _bind(bindings: tuple[_Binding, ...], descriptor: Any) -> tuple[_Binding, ...]:
    """The bindings with their fields: the message holds, in order, each tensor's field, then
    its ``<field>_shape`` where the example's shape varies (`workers.onnx_messages`)."""
    fields = list(descriptor.fields)
    bound, at = [], 0

    def take(what: str) -> FieldDescriptor:
        nonlocal at
        if at >= len(fields):
            raise InvalidRequest(
                f"{descriptor.full_name} has no field for {what}: it does not follow the "
                "version's signature"
            )
        at += 1
        return fields[at - 1]

    for binding in bindings:
        field = take(binding.name)
        if field.is_repeated == binding.scalar:
            raise InvalidRequest(
                f"{descriptor.full_name}.{field.name} does not carry tensor {binding.name!r}"
            )
        shape_field = None
        if binding.example is None or -1 in binding.example:
            shape = take(f"the shape of {binding.name}")
            shape_field = shape.name
        bound.append(
            _Binding(
                binding.info,
                field.name,
                binding.example,
                binding.batched,
                binding.scalar,
                shape_field,
                binding.string,
                _packed(field),
            )
        )
    if at != len(fields):
        raise InvalidRequest(
            f"{descriptor.full_name} has fields beyond the version's signature: it does not map"
        )
    return tuple(bound)


def class_tensors(request_class: type[Message], response_class: type[Message]) -> ModelTensors:
    """The mapping of a class model's messages: a tensor per field (module docstring); an
    `InvalidRequest` for a message with a field that maps to no tensor."""
    return ModelTensors(
        "inferq_python",
        _field_bindings(request_class.DESCRIPTOR),
        _field_bindings(response_class.DESCRIPTOR),
        request_class,
        response_class,
    )


def _field_bindings(descriptor: Any) -> tuple[_Binding, ...]:
    bindings = []
    for field in descriptor.fields:
        datatype = FIELD_DATATYPES.get(field.type)
        if datatype is None or field.message_type is not None:
            kind = "a map" if _is_map(field) else f"of protobuf type {field.type}"
            if field.message_type is not None and not _is_map(field):
                kind = f"a message ({field.message_type.full_name})"
            elif field.type == _F.TYPE_ENUM:
                kind = "an enum"
            raise InvalidRequest(
                f"{descriptor.full_name}.{field.name} is {kind}: the message does not map to "
                "tensors; send it to the native POST /predict/{model} as JSON"
            )
        scalar = not field.is_repeated
        bindings.append(
            _Binding(
                TensorInfo(field.name, datatype, (-1,) if scalar else (-1, -1)),
                field.name,
                () if scalar else (-1,),
                batched=True,
                scalar=scalar,
                string=field.type == _F.TYPE_STRING,
                packed=_packed(field),
            )
        )
    return tuple(bindings)


#: The field types whose packed values are plain little-endian numbers.
_PACKED_DTYPES = {_F.TYPE_FLOAT: "<f4", _F.TYPE_DOUBLE: "<f8"}


def _packed(field: Any) -> tuple[int, str] | None:
    dtype = _PACKED_DTYPES.get(field.type)
    return None if dtype is None or not field.is_repeated else (field.number, dtype)


def _is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return message is not None and message.GetOptions().map_entry
