"""`OnnxModel`: serves one stored catalog version with ONNX Runtime, with no code of its own.

Its messages come from the version's signature (`workers.onnx_messages`): a request is one
example, and requests stack along a dynamic first dimension into one run.
`onnx_model_class` makes the class a worker serves for one version and its local file.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from google.protobuf.message import Message

from catalog.records import Version
from catalog.signature import Signature
from inferq.names import version_key
from inferq.settings import WorkerSettings
from workers.base import Model
from workers.models.model_b import onnx_session
from workers.onnx_messages import OnnxMessages, TensorField, build_messages

#: A batch that ran faster than this (on average, lately) runs on the event loop: a hop to
#: the thread and back costs ~40 µs, a good part of such a model's whole run (digits.onnx:
#: ~0.1 ms for 32), and a loop blocked for under a millisecond delays no heartbeat. A slower
#: model runs in the thread, so heartbeats and acks keep flowing while it computes.
INLINE_BELOW_S = 0.001
#: Weight of the newest batch in the average run time.
RECENT_WEIGHT = 0.2

Array = np.ndarray  # type: ignore[type-arg]


class OnnxModel(Model[Message, Message]):
    """A catalog version run with ONNX Runtime. Made by `onnx_model_class`."""

    messages: ClassVar[OnnxMessages]
    path: ClassVar[Path]
    mark_running = False  # as model_b: most ONNX models answer within a millisecond
    concurrency = 2  # one batch runs while the last one's results are being stored

    def __init__(self, settings: WorkerSettings) -> None:
        super().__init__(settings)
        # Unknown until a batch has run: the first runs in the thread, to be safe.
        self._recent_run_s = math.inf

    async def load(self) -> None:
        self._session = onnx_session(self.path)
        self._output_names = [tensor.onnx_name for tensor in self.messages.outputs]

    async def process_request(self, request: Message) -> Message:
        return (await self.process_batch([request]))[0]

    async def process_batch(self, requests: Sequence[Message]) -> list[Message]:
        if len(requests) > 1 and not self.messages.batchable:  # INFERQ_MAX_BATCH_SIZE set
            return [response for r in requests for response in await self.process_batch([r])]
        feeds = {tensor.onnx_name: _input(tensor, requests) for tensor in self.messages.inputs}
        if self._recent_run_s < INLINE_BELOW_S:
            outputs = self._run(feeds)
        else:
            outputs = await self.run_in_thread(self._run, feeds)
        return _responses(self.messages, outputs, len(requests))

    def _run(self, feeds: dict[str, Array]) -> list[Array]:
        started = time.perf_counter()
        outputs: list[Array] = self._session.run(self._output_names, feeds)
        took = time.perf_counter() - started
        if math.isinf(self._recent_run_s):
            self._recent_run_s = took
        else:
            self._recent_run_s += RECENT_WEIGHT * (took - self._recent_run_s)
        return outputs


def onnx_model_class(version: Version, path: Path) -> type[OnnxModel]:
    """The model class serving ``version`` from its file at ``path``, as ``digits@3``."""
    messages = build_messages(Signature.from_json(version.signature), version.model, version.number)
    name = version_key(version.model, version.number)
    attributes = {
        "name": name,
        "version": str(version.number),
        "description": version.metadata.description or _describe(name, messages),
        "request_type": messages.request_type,
        "response_type": messages.response_type,
        "max_batch_size": 32 if messages.batchable else 1,
        "messages": messages,
        "path": path,
    }
    return type(f"OnnxModel[{name}]", (OnnxModel,), attributes)


def _describe(name: str, messages: OnnxMessages) -> str:
    """``digits@3 (ONNX): pixels (64 float32) -> label (int64), probabilities (10 float32)``."""

    def one(tensor: TensorField) -> str:
        if tensor.scalar:
            return f"{tensor.field} ({tensor.dtype})"
        count = "n" if tensor.count is None else tensor.count
        return f"{tensor.field} ({count} {tensor.dtype})"

    inputs = ", ".join(map(one, messages.inputs))
    outputs = ", ".join(map(one, messages.outputs))
    return f"{name} (ONNX): {inputs} -> {outputs}"


# --- messages -> arrays -----------------------------------------------------------------


def _input(tensor: TensorField, requests: Sequence[Message]) -> Array:
    """The tensor fed for ``requests``: their examples stacked, or one request's tensor."""
    if tensor.stackable:
        count, shape = tensor.count, tensor.fixed_shape
        assert count is not None and shape is not None
        if tensor.scalar:
            values = [getattr(request, tensor.field) for request in requests]
            return _array(tensor, values, len(requests)).reshape(len(requests))
        columns = [getattr(request, tensor.field) for request in requests]
        for column in columns:
            if len(column) != count:
                raise ValueError(
                    f"{tensor.field!r} must hold {count} values (one example of shape "
                    f"{list(shape)}), got {len(column)}"
                )
        flat = _array(tensor, itertools.chain.from_iterable(columns), count * len(requests))
        return flat.reshape(len(requests), *shape)
    [request] = requests
    if tensor.scalar:
        return _array(tensor, [getattr(request, tensor.field)], 1).reshape(())
    values = getattr(request, tensor.field)
    shape = _given_shape(tensor, request, len(values))
    array = _array(tensor, values, len(values)).reshape(shape)
    return array[np.newaxis] if tensor.batched else array


def _given_shape(tensor: TensorField, request: Message, count: int) -> tuple[int, ...]:
    """The shape of the values a request gives for a tensor that is not stacked: fixed, or
    read from its ``_shape`` field and checked against the signature and the values."""
    fixed = tensor.fixed_shape
    if fixed is not None:
        if count != math.prod(fixed):
            raise ValueError(
                f"{tensor.field!r} must hold {math.prod(fixed)} values (shape {list(fixed)}), "
                f"got {count}"
            )
        return fixed
    assert tensor.shape_field is not None
    given = tuple(getattr(request, tensor.shape_field))
    expected = tensor.example_shape
    if expected is None and not given:
        return (count,)  # unknown rank and no shape: a vector of the values
    if any(dim < 0 for dim in given):
        raise ValueError(f"{tensor.shape_field!r} must not hold negative sizes, got {list(given)}")
    if expected is not None:
        wanted = ["?" if not isinstance(dim, int) else dim for dim in expected]
        if len(given) != len(expected) or any(
            isinstance(dim, int) and dim != size for dim, size in zip(expected, given, strict=True)
        ):
            raise ValueError(
                f"{tensor.shape_field!r} must be a shape like {wanted} "
                f"('?' any size), got {list(given)}"
            )
    if count != math.prod(given):
        raise ValueError(
            f"{tensor.field!r} must hold {math.prod(given)} values (shape {list(given)} from "
            f"{tensor.shape_field!r}), got {count}"
        )
    return given


def _array(tensor: TensorField, values: Any, count: int) -> Array:
    """``count`` values of a field as a flat array of the tensor's dtype."""
    dtype = tensor.numpy_dtype()
    if dtype.kind == "O":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array
    try:
        if dtype == np.float16:  # fromiter makes no float16 from Python floats
            return np.fromiter(values, np.float32, count).astype(np.float16)
        return np.fromiter(values, dtype, count)
    except OverflowError as error:  # an int32 field's value past an int8 tensor's range
        raise ValueError(f"{tensor.field!r}: {error} (the model takes {tensor.dtype})") from None


# --- arrays -> messages -----------------------------------------------------------------


def _responses(messages: OnnxMessages, outputs: list[Array], n: int) -> list[Message]:
    """One response per request: its slice of each batched output, or the whole output."""
    fields: list[dict[str, Any]] = [{} for _ in range(n)]
    for tensor, array in zip(messages.outputs, outputs, strict=True):
        if tensor.batched:
            if array.ndim == 0 or array.shape[0] != n:
                rows = "a scalar" if array.ndim == 0 else f"{array.shape[0]} rows"
                raise ValueError(
                    f"output {tensor.onnx_name!r} has {rows} for {n} request(s): its first "
                    "dimension is not the batch's"
                )
            if tensor.scalar:
                values: list[Any] = _plain(array).tolist()
            else:
                values = _plain(array).reshape(n, -1).tolist()
            for response, value in zip(fields, values, strict=True):
                response[tensor.field] = value
            if tensor.shape_field:
                for response in fields:
                    response[tensor.shape_field] = array.shape[1:]
        else:  # the model runs one request at a time
            [response] = fields
            plain = _plain(array)
            response[tensor.field] = plain.item() if tensor.scalar else plain.ravel().tolist()
            if tensor.shape_field:
                response[tensor.shape_field] = array.shape
    return [messages.response_type(**response) for response in fields]


def _plain(array: Array) -> Array:
    """An array whose ``tolist`` gives what the field takes: float16 as float32, bytes as str."""
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.kind == "S":
        return np.char.decode(array, "utf-8").astype(object)
    return array
