"""Request bodies in, task views out: JSON (proto3 JSON mapping) or binary protobuf."""

from __future__ import annotations

import datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from inferq.errors import InvalidRequest, UnsupportedMediaType
from inferq.tasks import DEADLINE_EXCEEDED, TaskState, TaskStatus

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
    try:
        json_format.Parse(body, message)
    except (json_format.ParseError, UnicodeDecodeError, RecursionError, ValueError) as error:
        raise InvalidRequest(
            f"body does not match {message.DESCRIPTOR.full_name}: {error}",
            fields=[field.name for field in message.DESCRIPTOR.fields],
        ) from None
    return message


def message_to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return (
        datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


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
