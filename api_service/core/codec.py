"""Request bodies in, task views out: JSON (proto3 JSON mapping) or binary protobuf."""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from inferq.errors import InvalidRequest, UnsupportedMediaType
from inferq.tasks.outcomes import DEADLINE_EXCEEDED
from inferq.tasks.state import TaskState, TaskStatus

JSON_TYPES = frozenset({"application/json", ""})
PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})


def decode_request(body: bytes, content_type: str, message_class: type[Message]) -> Message:
    """The model's request message from a body, or a 4xx that says what is wrong."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    message = message_class()
    if media_type in PROTOBUF_TYPES:
        try:
            message.ParseFromString(body)
        except DecodeError as error:
            raise InvalidRequest(
                f"body is not a valid {message.DESCRIPTOR.full_name}: {error}"
            ) from None
        return message
    if media_type not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media_type!r}; send application/json or "
            "application/x-protobuf"
        )
    fast = _construct_plain(body, message_class)
    if fast is not None:
        return fast
    try:
        json_format.Parse(body, message)
    except (json_format.ParseError, UnicodeDecodeError, RecursionError, ValueError) as error:
        raise InvalidRequest(
            f"body does not match {message.DESCRIPTOR.full_name}: {error}",
            fields=[field.name for field in message.DESCRIPTOR.fields],
        ) from None
    return message


_PLAIN_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_DOUBLE,
        FieldDescriptor.TYPE_FLOAT,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_STRING,
    }
)
# The proto3 JSON mapping writes 64-bit integers as strings.
_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE})


@dataclass(frozen=True)
class _PlainField:
    name: str
    type: int
    repeated: bool


@functools.lru_cache(maxsize=1024)
def _plain_fields(descriptor: Descriptor) -> tuple[_PlainField, ...] | None:
    """The fields of a message made only of numbers, bools and strings, repeated or not,
    without presence (no oneof, no proto3 ``optional``); None for any other message."""
    fields = descriptor.fields
    if any(f.type not in _PLAIN_TYPES or f.containing_oneof is not None for f in fields):
        return None
    return tuple(_PlainField(f.name, f.type, f.is_repeated) for f in fields)


def _construct_plain(body: bytes, message_class: type[Message]) -> Message | None:
    """The fast path for plain messages (json_format.Parse costs ~50x more): build the
    message from the parsed dict with the protobuf constructor, which type-checks every
    value. For these field types it accepts exactly what the proto3 JSON mapping accepts,
    except floats beyond float32's range (it stores inf) and the mapping's extra spellings
    (camelCase names, numbers as strings, "NaN"): for those, None, and the caller takes
    json_format's path, which also words the error."""
    fields = _plain_fields(message_class.DESCRIPTOR)
    if fields is None:
        return None
    try:
        values = orjson.loads(body)
        message = message_class(**values) if isinstance(values, dict) else None
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None
    if message is None:
        return None
    for field in fields:
        if field.type == FieldDescriptor.TYPE_FLOAT and not _finite(message, field):
            return None
    return message


def _finite(message: Message, field: _PlainField) -> bool:
    value = getattr(message, field.name)
    return all(map(math.isfinite, value if field.repeated else (value,)))


def message_to_json(message: Message) -> dict[str, Any]:
    """The message as the proto3 JSON mapping has it, every field included. Plain messages
    take a fast path (json_format's printer costs ~20 µs for ten floats): float fields become
    numpy float32 values, which the orjson response writes in their shortest form, as
    json_format does."""
    fields = _plain_fields(message.DESCRIPTOR)
    if fields is None:
        return _printed(message)
    view: dict[str, Any] = {}
    for field in fields:
        value = getattr(message, field.name)
        if field.type in _FLOAT_TYPES:
            # NaN and infinities are strings in the JSON mapping: json_format's job.
            if not all(map(math.isfinite, value if field.repeated else (value,))):
                return _printed(message)
            dtype = np.float32 if field.type == FieldDescriptor.TYPE_FLOAT else np.float64
            # fromiter: a third of asarray's time on a protobuf container.
            value = np.fromiter(value, dtype, len(value)) if field.repeated else dtype(value)
        elif field.type in _INT64_TYPES:
            value = [str(v) for v in value] if field.repeated else str(value)
        elif field.repeated:
            value = list(value)
        view[field.name] = value
    return view


def _printed(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    seconds, millis = divmod(ms, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    """A task's timestamps fall within a few seconds: each second is formatted once."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def task_view(state: TaskState, response_class: type[Message] | None, at_ms: int) -> dict[str, Any]:
    """The JSON a client sees for a task."""
    status = state.status
    if not status.is_final and status is TaskStatus.QUEUED and state.is_past_deadline(at_ms):
        # No worker will run it now (they skip expired tasks): say so without waiting.
        status = TaskStatus.EXPIRED
    view: dict[str, Any] = {
        "task_id": state.task_id,
        "model": state.model,
        "status": status.value,
        "created_at": _iso(state.created_at_ms),
        "started_at": _iso(state.started_at_ms),
        "finished_at": _iso(state.finished_at_ms),
        "deadline": _iso(state.deadline_ms),
        "worker_id": state.worker_id,
        "attempts": state.attempts,
    }
    if status is TaskStatus.SUCCEEDED and state.result is not None:
        if response_class is None:
            view["result"] = None
        else:
            view["result"] = message_to_json(response_class.FromString(state.result))
    if state.error_type:
        view["error"] = {"type": state.error_type, "message": state.error_message}
    elif status is TaskStatus.EXPIRED:
        view["error"] = {
            "type": DEADLINE_EXCEEDED.error_type,
            "message": DEADLINE_EXCEEDED.error_message,
        }
    return view
