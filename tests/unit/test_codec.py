"""The JSON request decoder: its fast path must accept and refuse exactly what the proto3
JSON mapping (json_format) does, with json_format's wording for the errors."""

from __future__ import annotations

import orjson
import pytest
from google.protobuf import json_format

from api_service.codec import decode_request
from inferq.errors import InvalidRequest
from proto.models_pb2 import ModelARequest, ModelBRequest
from proto.task_pb2 import TaskEnvelope


def reference(body: bytes, message_class: type) -> object:
    message = message_class()
    json_format.Parse(body, message)
    return message


@pytest.mark.parametrize(
    ("message_class", "fields"),
    [
        (ModelBRequest, {"pixels": [i / 64 for i in range(64)]}),
        (ModelBRequest, {"pixels": [0, 1, True]}),  # ints and bools are numbers in both
        (ModelBRequest, {"pixels": None}),
        (ModelBRequest, {}),
        (ModelARequest, {"data": "example"}),
        (TaskEnvelope, {"taskId": "camel", "createdAtMs": "12"}),  # JSON-mapping spellings
        (TaskEnvelope, {"task_id": "t", "request": "aGVsbG8="}),  # bytes are base64
    ],
)
def test_accepts_what_the_json_mapping_accepts(message_class: type, fields: dict) -> None:
    body = orjson.dumps(fields)
    assert decode_request(body, "application/json", message_class) == reference(body, message_class)


@pytest.mark.parametrize(
    ("message_class", "body", "words"),
    [
        (ModelBRequest, b'{"pixels": [1e39]}', "Float value too large"),
        (ModelBRequest, b'{"pixels": [null]}', "null is not allowed"),
        (ModelBRequest, b'{"pixels": ["x"]}', "pixels"),
        (ModelBRequest, b'{"pixel": [1]}', "pixel"),
        (ModelBRequest, b"[1, 2]", "ModelBRequest"),
        (ModelBRequest, b"{not json", "ModelBRequest"),
        (ModelARequest, b'{"data": 5}', "data"),
        (TaskEnvelope, b'{"created_at_ms": 1.5}', "created_at_ms"),
    ],
)
def test_refuses_what_the_json_mapping_refuses(
    message_class: type, body: bytes, words: str
) -> None:
    with pytest.raises(json_format.ParseError):
        reference(body, message_class)
    with pytest.raises(InvalidRequest) as refused:
        decode_request(body, "application/json", message_class)
    assert words in str(refused.value)
