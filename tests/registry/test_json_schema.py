"""JSON Schemas of messages: what a client sees, checked against what the gateway prints and
parses (json_format), so the schema neither rejects real output nor admits what the parser
refuses."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from grpc_tools import protoc
from jsonschema import Draft202012Validator

from model_registry.json_schema import message_json_schema
from proto import models_pb2

PROTO = """
syntax = "proto3";
package inferq.schematest;
import "google/protobuf/any.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

enum Color { COLOR_UNSPECIFIED = 0; RED = 1; GREEN = 2; }
message Scalars {
  double f_double = 1; float f_float = 2; int32 f_int32 = 3; int64 f_int64 = 4;
  uint32 f_uint32 = 5; uint64 f_uint64 = 6; sint32 f_sint32 = 7; sint64 f_sint64 = 8;
  fixed32 f_fixed32 = 9; fixed64 f_fixed64 = 10; sfixed32 f_sfixed32 = 11;
  sfixed64 f_sfixed64 = 12; bool f_bool = 13; string f_string = 14; bytes f_bytes = 15;
}
message Tree { string name = 1; repeated Tree children = 2; }
message Everything {
  Scalars scalars = 1;
  Color color = 2;
  repeated Color colors = 3;
  repeated float floats = 4;
  map<string, int32> counts = 5;
  map<int64, Scalars> by_id = 6;
  map<bool, string> flags = 7;
  Tree tree = 8;
  google.protobuf.Timestamp at = 9;
  google.protobuf.Duration took = 10;
  google.protobuf.Struct meta = 11;
  google.protobuf.Value anything = 12;
  google.protobuf.ListValue list = 13;
  google.protobuf.Int64Value big = 14;
  google.protobuf.FloatValue maybe_float = 15;
  google.protobuf.StringValue maybe_name = 16;
  google.protobuf.Empty nothing = 17;
  google.protobuf.FieldMask mask = 18;
  google.protobuf.Any extra = 19;
  oneof choice { string text = 20; int32 number = 21; }
  optional int32 maybe = 22;
  Everything next = 23;
  google.protobuf.NullValue null_value = 24;
}
"""
EVERYTHING = {
    "scalars": {
        "f_double": 1.5,
        "f_float": -2.25,
        "f_int32": -(2**31),
        "f_int64": str(-(2**63)),
        "f_uint32": 2**32 - 1,
        "f_uint64": str(2**64 - 1),
        "f_sint32": -7,
        "f_sint64": "-9",
        "f_fixed32": 3,
        "f_fixed64": "4",
        "f_sfixed32": -5,
        "f_sfixed64": "-6",
        "f_bool": True,
        "f_string": "héllo",
        "f_bytes": "AAEC/w==",
    },
    "color": "GREEN",
    "colors": ["RED", "GREEN"],
    "floats": [0.5, "NaN", "Infinity", "-Infinity"],
    "counts": {"a": 1, "b": -2},
    "by_id": {"-12": {"f_string": "x"}, "9007199254740993": {}},
    "flags": {"true": "yes", "false": "no"},
    "tree": {"name": "root", "children": [{"name": "leaf", "children": [{"name": "deep"}]}]},
    "at": "2024-05-01T12:00:00.250Z",
    "took": "-1.500s",
    "meta": {"k": [1, "two", None, {"x": True}]},
    "anything": [1, "a", None],
    "list": [1, {"a": 2}],
    "big": "12345678901234567",
    "maybe_float": 0.5,
    "maybe_name": "",
    "nothing": {},
    "mask": "scalars.fInt32,color",
    "extra": {"@type": "type.googleapis.com/inferq.schematest.Tree", "name": "packed"},
    "number": 4,
    "maybe": 0,
    "next": {"next": {"text": "bottom"}},
    "null_value": None,
}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pool.DescriptorPool:
    """PROTO compiled by protoc into a pool of its own."""
    root = tmp_path_factory.mktemp("schema_protos")
    (root / "schematest.proto").write_text(PROTO)
    out = root / "set.pb"
    include = files("grpc_tools") / "_proto"
    args = ["protoc", f"-I{root}", f"-I{include}", f"--descriptor_set_out={out}"]
    assert protoc.main([*args, "--include_imports", "schematest.proto"]) == 0
    fresh = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(Path(out).read_bytes()).file:
        fresh.Add(file)
    return fresh


@pytest.fixture(scope="module")
def everything(pool: descriptor_pool.DescriptorPool) -> type[Message]:
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("inferq.schematest.Everything")
    )


def _validator(message_class: type[Message]) -> Draft202012Validator:
    schema = message_json_schema(message_class.DESCRIPTOR)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _parses(document: dict[str, Any], message_class: type[Message], pool: Any = None) -> bool:
    try:
        json_format.ParseDict(document, message_class(), descriptor_pool=pool)
    except json_format.ParseError:
        return False
    return True


def test_printed_everything_validates_and_parses_back(
    everything: type[Message], pool: descriptor_pool.DescriptorPool
) -> None:
    message = json_format.ParseDict(EVERYTHING, everything(), descriptor_pool=pool)
    validator = _validator(everything)
    for options in (
        {},
        {"always_print_fields_with_no_presence": True},
        {"unquote_int64_if_possible": True},
    ):
        printed = json_format.MessageToDict(
            message, preserving_proto_field_name=True, descriptor_pool=pool, **options
        )
        assert list(validator.iter_errors(printed)) == [], options
    printed = json_format.MessageToDict(
        message, preserving_proto_field_name=True, descriptor_pool=pool
    )
    assert json_format.ParseDict(printed, everything(), descriptor_pool=pool) == message


@pytest.mark.parametrize(
    "message",
    [
        models_pb2.ModelARequest(data="hi"),
        models_pb2.ModelBRequest(pixels=[0.0, 0.5, 1.0]),
        models_pb2.ModelBResponse(label=3, probabilities=[0.25, 0.75]),
        models_pb2.ModelBResponse(),
    ],
    ids=["a-request", "b-request", "b-response", "b-response-empty"],
)
def test_printed_model_messages_validate(message: Message) -> None:
    printed = json_format.MessageToDict(message, preserving_proto_field_name=True)
    _validator(type(message)).validate(printed)


BAD_MODEL_B = [
    ({"pixels": ["a"]}, models_pb2.ModelBRequest),
    ({"pixels": 0.5}, models_pb2.ModelBRequest),
    ({"pixels": [1e39]}, models_pb2.ModelBRequest),
    ({"label": 2**31}, models_pb2.ModelBResponse),
    ({"label": 1.5}, models_pb2.ModelBResponse),
    ({"data": "x", "extra": 1}, models_pb2.ModelARequest),
    ({"data": 5}, models_pb2.ModelARequest),
]


@pytest.mark.parametrize(("document", "message_class"), BAD_MODEL_B)
def test_wrong_model_inputs_fail_schema_and_parser(
    document: dict[str, Any], message_class: type[Message]
) -> None:
    assert not _validator(message_class).is_valid(document)
    assert not _parses(document, message_class)


AGREED = [  # (document, valid): the schema and the parser must agree on each
    ({"color": 1}, True),
    ({"colors": ["RED", 2]}, True),
    ({"maybe_name": None, "big": 5, "maybe_float": "NaN"}, True),
    ({"scalars": {"f_uint64": "18446744073709551615", "f_int64": -3}}, True),
    ({"tree": {"children": [{"children": [{"name": "x"}]}]}}, True),
    ({"color": "PURPLE"}, False),
    ({"scalars": {"f_int64": "12abc"}}, False),
    ({"scalars": {"f_uint32": -1}}, False),
    ({"scalars": {"f_bool": "true"}}, False),
    ({"scalars": {"f_float": 1e39}}, False),
    ({"scalars": {"f_sint32": 2**31}}, False),
    ({"scalars": {"f_fixed32": 2**32}}, False),
    ({"tree": {"children": [{"children": [{"nam": "x"}]}]}}, False),
    ({"next": {"next": {"floats": ["x"]}}}, False),
    ({"counts": {"a": "x"}}, False),
    ({"by_id": {"abc": {}}}, False),
    ({"flags": {"yes": "x"}}, False),
    ({"took": "5 minutes"}, False),
    ({"list": {"a": 1}}, False),
    ({"maybe_name": 5}, False),
    ({"nothing": {"x": 1}}, False),
    ({"colors": "RED"}, False),
    ({"null_value": "x"}, False),
]


@pytest.mark.parametrize(("document", "valid"), AGREED)
def test_schema_agrees_with_parser(
    everything: type[Message],
    pool: descriptor_pool.DescriptorPool,
    document: dict[str, Any],
    valid: bool,
) -> None:
    assert _validator(everything).is_valid(document) is valid
    assert _parses(document, everything, pool) is valid


def test_messages_are_closed_objects_titled_by_full_name(everything: type[Message]) -> None:
    schema = message_json_schema(everything.DESCRIPTOR)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "inferq.schematest.Everything"
    assert set(schema["$defs"]) == {
        "inferq.schematest.Scalars",
        "inferq.schematest.Tree",
        "google.protobuf.Empty",
    }
    for name, definition in [(schema["title"], schema), *schema["$defs"].items()]:
        assert definition["title"] == name
        assert definition["type"] == "object"
        assert definition["additionalProperties"] is False
    assert "camelCase" not in json.dumps(schema)  # plain JSON: no cycles, no descriptor objects


def test_recursion_ends_in_references(everything: type[Message]) -> None:
    schema = message_json_schema(everything.DESCRIPTOR)
    tree = {"$ref": "#/$defs/inferq.schematest.Tree"}
    assert schema["properties"]["tree"] == tree
    assert schema["$defs"]["inferq.schematest.Tree"]["properties"]["children"] == {
        "type": "array",
        "items": tree,
    }
    assert schema["properties"]["next"] == {"$ref": "#"}


def test_scalar_bounds_and_well_known_forms(everything: type[Message]) -> None:
    schema = message_json_schema(everything.DESCRIPTOR)
    scalars = schema["$defs"]["inferq.schematest.Scalars"]["properties"]
    assert scalars["f_int32"] == {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
    assert scalars["f_fixed32"] == {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
    assert {"type": "string", "pattern": "^-?[0-9]+$"} in scalars["f_sint64"]["anyOf"]
    assert scalars["f_bytes"] == {"type": "string", "contentEncoding": "base64"}
    properties = schema["properties"]
    assert properties["at"] == {"type": "string", "format": "date-time"}
    assert properties["meta"] == {"type": "object"}
    assert properties["anything"] == {}
    assert properties["list"] == {"type": "array"}
    assert {"type": "null"} in properties["maybe_name"]["anyOf"]
    assert properties["counts"]["additionalProperties"]["type"] == "integer"
