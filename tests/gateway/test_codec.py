"""The JSON request decoder: its fast path must accept and refuse exactly what the proto3
JSON mapping (json_format) does, with json_format's wording for the errors."""

from __future__ import annotations

import orjson
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor_pb2 import FieldDescriptorProto
from google.protobuf.message import Message

from api_service.core.codec import decode_request, message_to_json
from api_service.responses import JSONResponse
from inferq.errors import InvalidRequest
from proto.models_pb2 import ModelARequest, ModelAResponse, ModelBRequest, ModelBResponse
from proto.task_pb2 import TaskEnvelope


def _int64_values() -> type:
    """A message with 64-bit integers, built here: no shipped message has one."""
    file = descriptor_pb2.FileDescriptorProto(
        name="codec_test.proto", package="inferq.codectest", syntax="proto3"
    )
    message = file.message_type.add(name="Int64Values")
    message.field.add(name="one", number=1, type=FieldDescriptorProto.TYPE_INT64)
    message.field.add(
        name="many",
        number=2,
        type=FieldDescriptorProto.TYPE_UINT64,
        label=FieldDescriptorProto.LABEL_REPEATED,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("inferq.codectest.Int64Values")
    )


Int64Values = _int64_values()


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


@pytest.mark.parametrize(
    "message",
    [
        ModelBResponse(label=3, probabilities=[0.1, 1 / 3, 2e-7, 0.999999, 1e-30, 0.0]),
        ModelBResponse(),  # defaults are printed too
        ModelAResponse(reply="Processed message: é"),
        ModelBResponse(label=1, probabilities=[float("nan"), float("inf")]),  # json_format's
        TaskEnvelope(task_id="t", created_at_ms=2**40, request=b"\x00"),  # bytes: json_format
        Int64Values(one=-(2**62), many=[1, 2**63 - 1]),  # 64-bit integers are strings
    ],
)
def test_results_read_as_the_json_mapping_prints_them(message: Message) -> None:
    rendered = orjson.loads(JSONResponse({"result": message_to_json(message)}).body)
    expected = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    assert rendered == {"result": expected}
    # The same text, not only the same numbers: float32 values in their shortest form.
    assert orjson.dumps(rendered) == orjson.dumps({"result": expected})
