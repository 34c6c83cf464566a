"""The formats compared: one small class each, turning a float32 array into bytes and back.

(Named ``formats`` rather than ``codecs`` so that running a file of this folder directly never
shadows the standard library's ``codecs`` module.)

Every encoder takes a numpy array and every decoder returns one, because that is what a worker
has and needs: a format that wants Python lists pays for ``tolist()`` and ``np.array`` here.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import msgpack
import numpy as np
import numpy.typing as npt
import orjson

from proto import tensor_pb2

Array = npt.NDArray[np.float32]

# Little-endian float32: the byte order the raw-buffer formats promise on the wire.
LE_F32 = np.dtype("<f4")


def _buffer(array: Array) -> bytes:
    """The array's little-endian float32 bytes (a plain copy on little-endian machines)."""
    return np.ascontiguousarray(array, dtype=LE_F32).tobytes()


def _from_buffer(data: bytes, shape: Any) -> Array:
    """A read-only float32 view of ``data``, shaped; no copy beyond the one ``data`` already is."""
    return np.frombuffer(data, dtype=LE_F32).reshape(tuple(shape))


def _from_values(values: Any, shape: Any) -> Array:
    """A float32 array built from a sequence of numbers (a list, or protobuf's container)."""
    return np.array(values, dtype=np.float32).reshape(tuple(shape))


class Codec(ABC):
    """One wire format for a float32 tensor."""

    name: ClassVar[str]
    # False only for the raw floor, whose receiver must know the shape out of band.
    carries_shape: ClassVar[bool] = True

    @abstractmethod
    def encode(self, array: Array) -> bytes:
        """Serialize ``array`` (float32, C-contiguous) to bytes."""

    @abstractmethod
    def decode(self, payload: bytes) -> Array:
        """Rebuild the float32 array ``encode`` was given."""


class RawNumpy(Codec):
    """The floor: the buffer itself. Decoding is a zero-copy view, so it costs O(1)."""

    name = "raw-numpy"
    carries_shape = False

    def encode(self, array: Array) -> bytes:
        return _buffer(array)

    def decode(self, payload: bytes) -> Array:
        return np.frombuffer(payload, dtype=LE_F32)


class ProtoRepeated(Codec):
    """``FloatTensor``: a packed ``repeated float``, filled from a Python list."""

    name = "proto-repeated"

    def encode(self, array: Array) -> bytes:
        # tolist() then one bulk assignment is ~5x faster than extend(array), which
        # converts numpy scalars one at a time.
        message = tensor_pb2.FloatTensor(values=array.ravel().tolist(), shape=array.shape)
        return message.SerializeToString()

    def decode(self, payload: bytes) -> Array:
        message = tensor_pb2.FloatTensor.FromString(payload)
        # upb's repeated container implements __array__, so this is a bulk copy, not a loop.
        return _from_values(message.values, message.shape)


class ProtoBytes(Codec):
    """``PackedTensor``: the raw buffer in a ``bytes`` field, plus shape and dtype."""

    name = "proto-bytes"

    def encode(self, array: Array) -> bytes:
        message = tensor_pb2.PackedTensor(data=_buffer(array), shape=array.shape, dtype="float32")
        return message.SerializeToString()

    def decode(self, payload: bytes) -> Array:
        message = tensor_pb2.PackedTensor.FromString(payload)
        if message.dtype != "float32":
            raise ValueError(f"expected a float32 tensor, got {message.dtype!r}")
        return _from_buffer(message.data, message.shape)


class JsonStdlib(Codec):
    """``{"shape": [...], "values": [...]}`` through the standard library's ``json``."""

    name = "json-stdlib"

    def encode(self, array: Array) -> bytes:
        document = {"shape": list(array.shape), "values": array.ravel().tolist()}
        # Compact separators: the default ", " would add a byte per value for nothing.
        return json.dumps(document, separators=(",", ":")).encode()

    def decode(self, payload: bytes) -> Array:
        document = json.loads(payload)
        return _from_values(document["values"], document["shape"])


class OrjsonNumpy(Codec):
    """The same document through ``orjson``, which reads the numpy array itself.

    orjson writes float32 values with their shortest float32 repr ("1.117622"), where
    ``tolist()`` widens them to float64 and gets 17 digits ("1.1176220178604126").
    """

    name = "orjson-numpy"

    def encode(self, array: Array) -> bytes:
        document = {"shape": list(array.shape), "values": array.ravel()}
        return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)

    def decode(self, payload: bytes) -> Array:
        # orjson has no numpy path for loads: the values come back as a list either way.
        document = orjson.loads(payload)
        return _from_values(document["values"], document["shape"])


class OrjsonList(Codec):
    """The same document through ``orjson`` from ``tolist()``, as code unaware of numpy does."""

    name = "orjson-list"

    def encode(self, array: Array) -> bytes:
        return orjson.dumps({"shape": list(array.shape), "values": array.ravel().tolist()})

    def decode(self, payload: bytes) -> Array:
        document = orjson.loads(payload)
        return _from_values(document["values"], document["shape"])


class MsgpackList(Codec):
    """A msgpack map with the values as a list of msgpack float32s (5 bytes each)."""

    name = "msgpack-list"

    def encode(self, array: Array) -> bytes:
        document = {"shape": list(array.shape), "values": array.ravel().tolist()}
        # The values are exactly float32, so single floats lose nothing and save 4 bytes each.
        packed: bytes = msgpack.packb(document, use_single_float=True)
        return packed

    def decode(self, payload: bytes) -> Array:
        document = msgpack.unpackb(payload)
        return _from_values(document["values"], document["shape"])


class MsgpackBytes(Codec):
    """A msgpack map carrying the raw buffer as a ``bin`` value, plus shape and dtype."""

    name = "msgpack-bytes"

    def encode(self, array: Array) -> bytes:
        document = {"shape": list(array.shape), "dtype": "float32", "data": _buffer(array)}
        packed: bytes = msgpack.packb(document)
        return packed

    def decode(self, payload: bytes) -> Array:
        document = msgpack.unpackb(payload)
        if document["dtype"] != "float32":
            raise ValueError(f"expected a float32 tensor, got {document['dtype']!r}")
        return _from_buffer(document["data"], document["shape"])


# In table order; raw-numpy first because every ratio is taken against it.
CODECS: tuple[Codec, ...] = (
    RawNumpy(),
    ProtoBytes(),
    ProtoRepeated(),
    MsgpackBytes(),
    MsgpackList(),
    OrjsonNumpy(),
    OrjsonList(),
    JsonStdlib(),
)
