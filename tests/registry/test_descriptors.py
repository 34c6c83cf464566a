"""Descriptor sets: a gateway rebuilds a model's messages from the bytes its worker shipped."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from grpc_tools import protoc

from model_registry.descriptors import MessageTypes, build_descriptor_set, load_message_types
from proto import models_pb2

# Three files: base imports timestamp; request imports base, struct and any; reply imports base.
PROTOS = {
    "dtest/base.proto": """
        syntax = "proto3";
        package inferq.dtest;
        import "google/protobuf/timestamp.proto";
        enum Kind { KIND_UNSPECIFIED = 0; FAST = 1; SLOW = 2; }
        message Stamp { google.protobuf.Timestamp at = 1; Kind kind = 2; }
    """,
    "dtest/request.proto": """
        syntax = "proto3";
        package inferq.dtest;
        import "dtest/base.proto";
        import "google/protobuf/any.proto";
        import "google/protobuf/struct.proto";
        message Request {
          Stamp stamp = 1;
          map<string, Stamp> by_name = 2;
          Request child = 3;
          google.protobuf.Struct meta = 4;
          google.protobuf.Any extra = 5;
        }
    """,
    "dtest/reply.proto": """
        syntax = "proto3";
        package inferq.dtest;
        import "dtest/base.proto";
        message Reply { repeated Stamp stamps = 1; }
    """,
}
REQUEST_JSON = {
    "stamp": {"at": "2024-05-01T12:00:00Z", "kind": "FAST"},
    "by_name": {"a": {"kind": "SLOW"}, "b": {"at": "1970-01-01T00:00:01.500Z"}},
    "child": {"child": {"meta": {"x": [1, "two", None]}}},
    "meta": {"k": {"nested": True}},
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    """PROTOS compiled by protoc, with every import, as a worker's build would see them."""
    root = tmp_path_factory.mktemp("protos")
    for name, text in PROTOS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    out = root / "set.pb"
    include = files("grpc_tools") / "_proto"
    args = ["protoc", f"-I{root}", f"-I{include}", f"--descriptor_set_out={out}"]
    assert protoc.main([*args, "--include_imports", *PROTOS]) == 0
    return descriptor_pb2.FileDescriptorSet.FromString(Path(out).read_bytes())


@pytest.fixture(scope="module")
def worker_classes(compiled: descriptor_pb2.FileDescriptorSet) -> dict[str, type[Message]]:
    """The classes a worker would have imported, kept out of the default pool."""
    pool = descriptor_pool.DescriptorPool()
    for file in compiled.file:
        pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inferq.dtest.{name}"))
        for name in ("Request", "Reply", "Stamp")
    }


def _file_names(descriptor_set: bytes) -> list[str]:
    return [f.name for f in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file]


def _set_of(*file_protos: descriptor_pb2.FileDescriptorProto) -> bytes:
    return descriptor_pb2.FileDescriptorSet(file=file_protos).SerializeToString()


def _one_message_file(package: str, *fields: str) -> descriptor_pb2.FileDescriptorProto:
    """proto/models.proto defining ``{package}.ModelARequest`` with string ``fields``."""
    string = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    message = descriptor_pb2.DescriptorProto(name="ModelARequest")
    for number, name in enumerate(fields, start=1):
        message.field.add(name=name, number=number, type=string, json_name=name)
    return descriptor_pb2.FileDescriptorProto(
        name="proto/models.proto", package=package, syntax="proto3", message_type=[message]
    )


def _file_with_undefined_type() -> descriptor_pb2.FileDescriptorProto:
    field = descriptor_pb2.FieldDescriptorProto(
        name="x",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=".inferq.Missing",
    )
    message = descriptor_pb2.DescriptorProto(name="Broken", field=[field])
    return descriptor_pb2.FileDescriptorProto(name="broken.proto", message_type=[message])


def test_models_of_one_file_ship_that_file_once() -> None:
    types = models_pb2.ModelARequest, models_pb2.ModelBRequest, models_pb2.ModelBResponse
    assert _file_names(build_descriptor_set(*types)) == ["proto/models.proto"]


def test_generated_models_round_trip_through_the_set() -> None:
    types = load_message_types(
        build_descriptor_set(models_pb2.ModelBRequest, models_pb2.ModelBResponse)
    )
    request_class = types.message_class("inferq.models.ModelBRequest")
    assert request_class is not models_pb2.ModelBRequest
    request = json_format.ParseDict({"pixels": [0.25, 1.0, 0.0]}, request_class())
    assert models_pb2.ModelBRequest.FromString(request.SerializeToString()).pixels == [
        0.25,
        1.0,
        0.0,
    ]
    response = models_pb2.ModelBResponse(label=7, probabilities=[0.5, 0.25])
    rebuilt = types.message_class("inferq.models.ModelBResponse").FromString(
        response.SerializeToString()
    )
    assert json_format.MessageToDict(rebuilt, preserving_proto_field_name=True) == {
        "label": 7,
        "probabilities": [0.5, 0.25],
    }


def test_set_holds_every_import_once_and_before_its_importers(
    worker_classes: dict[str, type[Message]],
) -> None:
    names = _file_names(build_descriptor_set(worker_classes["Request"], worker_classes["Reply"]))
    assert sorted(names) == sorted(
        [
            *PROTOS,
            "google/protobuf/timestamp.proto",
            "google/protobuf/any.proto",
            "google/protobuf/struct.proto",
        ]
    )
    loaded: set[str] = set()
    for file in descriptor_pb2.FileDescriptorSet.FromString(
        build_descriptor_set(worker_classes["Request"], worker_classes["Reply"])
    ).file:
        assert set(file.dependency) <= loaded, f"{file.name} comes before its imports"
        loaded.add(file.name)


def test_rich_message_round_trips_bytes_and_json(
    worker_classes: dict[str, type[Message]],
) -> None:
    sent = json_format.ParseDict(REQUEST_JSON, worker_classes["Request"]())
    types = load_message_types(build_descriptor_set(worker_classes["Request"]))
    received = types.message_class("inferq.dtest.Request").FromString(sent.SerializeToString())
    as_json = json_format.MessageToDict(received, preserving_proto_field_name=True)
    assert as_json["stamp"] == REQUEST_JSON["stamp"]
    assert as_json["child"] == REQUEST_JSON["child"]
    reparsed = json_format.ParseDict(as_json, types.message_class("inferq.dtest.Request")())
    assert reparsed.SerializeToString(deterministic=True) == sent.SerializeToString(
        deterministic=True
    )


def test_any_fields_resolve_through_the_sets_own_pool(
    worker_classes: dict[str, type[Message]],
) -> None:
    types = load_message_types(build_descriptor_set(worker_classes["Request"]))
    document = {"extra": {"@type": "type.googleapis.com/inferq.dtest.Stamp", "kind": "SLOW"}}
    request_class = types.message_class("inferq.dtest.Request")
    with pytest.raises(json_format.ParseError):  # the default pool has never seen Stamp
        json_format.ParseDict(document, request_class())
    request = json_format.ParseDict(document, request_class(), descriptor_pool=types.pool)
    assert json_format.MessageToDict(request, descriptor_pool=types.pool) == document


def test_two_versions_of_one_message_coexist_beside_generated_code() -> None:
    old = MessageTypes(_set_of(_one_message_file("inferq.models", "data")))
    new = MessageTypes(_set_of(_one_message_file("inferq.models", "data", "extra")))
    old_class = old.message_class("inferq.models.ModelARequest")
    new_class = new.message_class("inferq.models.ModelARequest")
    both = {"data": "x", "extra": "y"}
    assert json_format.MessageToDict(json_format.ParseDict(both, new_class())) == both
    with pytest.raises(json_format.ParseError, match="extra"):
        json_format.ParseDict(both, old_class())
    # The generated class of the same name, in the default pool, is untouched.
    assert [f.name for f in models_pb2.ModelARequest.DESCRIPTOR.fields] == ["data"]
    generated = descriptor_pool.Default().FindMessageTypeByName("inferq.models.ModelARequest")
    assert generated is models_pb2.ModelARequest.DESCRIPTOR


def test_unknown_message_name_is_a_key_error_naming_what_the_set_has() -> None:
    types = load_message_types(build_descriptor_set(models_pb2.ModelARequest))
    with pytest.raises(KeyError, match="inferq.models.Nope.*inferq.models.ModelARequest"):
        types.message_class("inferq.models.Nope")


def test_files_in_any_order_load(compiled: descriptor_pb2.FileDescriptorSet) -> None:
    types = MessageTypes(_set_of(*reversed(compiled.file)))
    assert "inferq.dtest.Request" in types.names
    assert types.message_class("inferq.dtest.Request")().DESCRIPTOR.full_name == (
        "inferq.dtest.Request"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xff not a descriptor set", "not a serialized FileDescriptorSet"),
        (_set_of(_one_message_file("a"), _one_message_file("b")), "two different files"),
        (_set_of(_file_with_undefined_type()), "cannot load 'broken.proto'"),
    ],
    ids=["garbage", "same-file-twice", "undefined-type"],
)
def test_broken_sets_are_value_errors(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_message_types(raw)


def test_a_set_missing_an_import_is_a_value_error(
    compiled: descriptor_pb2.FileDescriptorSet,
) -> None:
    without_timestamp = [f for f in compiled.file if f.name != "google/protobuf/timestamp.proto"]
    with pytest.raises(ValueError, match="imports 'google/protobuf/timestamp.proto'"):
        MessageTypes(_set_of(*without_timestamp))


def test_loading_is_cached_by_content() -> None:
    raw = build_descriptor_set(models_pb2.ModelARequest)
    same_content = bytes(bytearray(raw))
    assert same_content is not raw
    assert load_message_types(same_content) is load_message_types(raw)
    other = build_descriptor_set(models_pb2.ModelARequest, models_pb2.ModelBRequest)
    assert other == raw  # one file either way, so one set
    different = _set_of(_one_message_file("inferq.other", "data"))
    assert load_message_types(different) is not load_message_types(raw)
