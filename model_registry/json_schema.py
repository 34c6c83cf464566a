"""JSON Schemas (draft 2020-12) of protobuf messages, as the proto3 JSON mapping writes them.

The gateway shows these so a client can write a request for a model whose code it never saw.
Properties use the proto field names, as the gateway prints with
``preserving_proto_field_name=True``; its parser also takes the lowerCamelCase names and a
few looser spellings (integers as strings, null for "unset"), which the schema leaves out.
Messages go in ``$defs`` under their full names, so recursive messages stay finite.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, cast

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

if TYPE_CHECKING:  # the stubs type a generated class's DESCRIPTOR as either implementation's
    from google._upb._message import Descriptor as UpbDescriptor

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

Schema = dict[str, Any]
F = FieldDescriptor


def _integer(bits: int, signed: bool) -> Schema:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return {"type": "integer", "minimum": low, "maximum": high}


def _integer_or_digits(bits: int, signed: bool) -> Schema:
    # proto3 JSON writes 64-bit integers as strings: a JSON number loses precision past 2^53.
    digits = {"type": "string", "pattern": "^-?[0-9]+$" if signed else "^[0-9]+$"}
    return {"anyOf": [_integer(bits, signed), digits]}


def _floating(limit: float | None) -> Schema:
    number: Schema = {"type": "number"}
    if limit is not None:  # the parser rejects a float outside float32's range
        number |= {"minimum": -limit, "maximum": limit}
    return {"anyOf": [number, {"enum": ["NaN", "Infinity", "-Infinity"]}]}


_INT32 = (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32)
_UINT32 = (F.TYPE_UINT32, F.TYPE_FIXED32)
_INT64 = (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64)
_UINT64 = (F.TYPE_UINT64, F.TYPE_FIXED64)
_SCALARS: dict[int, Schema] = {
    F.TYPE_DOUBLE: _floating(None),
    F.TYPE_FLOAT: _floating(float.fromhex("0x1.fffffep+127")),  # float32's largest
    **{t: _integer(32, True) for t in _INT32},
    **{t: _integer(32, False) for t in _UINT32},
    **{t: _integer_or_digits(64, True) for t in _INT64},
    **{t: _integer_or_digits(64, False) for t in _UINT64},
    F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_STRING: {"type": "string"},
    F.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}

# Well-known types have a JSON form of their own instead of their fields.
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
}
_WRAPPERS = {
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}
_MAP_KEYS: dict[int, Schema] = {  # map keys are JSON object keys, so always strings
    **{t: {"pattern": "^-?[0-9]+$"} for t in _INT32 + _INT64},
    **{t: {"pattern": "^[0-9]+$"} for t in _UINT32 + _UINT64},
    F.TYPE_BOOL: {"enum": ["true", "false"]},
}


def message_json_schema(descriptor: Descriptor | UpbDescriptor) -> Schema:
    """A JSON Schema of the proto3 JSON form of message ``descriptor``."""
    descriptor = cast(Descriptor, descriptor)  # both implementations have the same attributes
    builder = _Builder(descriptor)
    root = builder.message(descriptor, root=True)
    schema: Schema = {"$schema": DRAFT_2020_12, "title": descriptor.full_name, **root}
    if builder.defs:
        schema["$defs"] = builder.defs
    return schema


class _Builder:
    """Builds the schemas of one root message, collecting the messages it refers to."""

    def __init__(self, root: Descriptor) -> None:
        self._root = root.full_name
        self.defs: dict[str, Schema] = {}

    def message(self, message: Descriptor, root: bool = False) -> Schema:
        """The schema of a message value: inline for well-known types, else a reference."""
        name = message.full_name
        if name in _WELL_KNOWN:
            return copy.deepcopy(_WELL_KNOWN[name])
        if name in _WRAPPERS:  # a wrapper is its scalar, or null for "unset"
            return {"anyOf": [self.value(message.fields_by_name["value"]), {"type": "null"}]}
        if root:
            return self._object(message)
        if name == self._root:
            return {"$ref": "#"}
        if name not in self.defs:
            self.defs[name] = {}  # taken before recursing, so a recursive message stops here
            self.defs[name] = {"title": name, **self._object(message)}
        return {"$ref": f"#/$defs/{name}"}

    def field(self, field: FieldDescriptor) -> Schema:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            schema: Schema = {"type": "object", "additionalProperties": self.value(value)}
            if key.type in _MAP_KEYS:
                schema["propertyNames"] = copy.deepcopy(_MAP_KEYS[key.type])
            return schema
        if field.is_repeated:
            return {"type": "array", "items": self.value(field)}
        return self.value(field)

    def value(self, field: FieldDescriptor) -> Schema:
        """The schema of one value of ``field``: an element, for a repeated field."""
        if field.message_type is not None:  # a message or a proto2 group
            return self.message(field.message_type)
        if field.enum_type is not None:
            return _enum(field.enum_type)
        return copy.deepcopy(_SCALARS[field.type])

    def _object(self, message: Descriptor) -> Schema:
        schema: Schema = {
            "type": "object",
            "properties": {field.name: self.field(field) for field in message.fields},
            "additionalProperties": False,
        }
        required = [field.name for field in message.fields if field.is_required]  # proto2 only
        if required:
            schema["required"] = required
        return schema


def _enum(enum: EnumDescriptor) -> Schema:
    if enum.full_name == "google.protobuf.NullValue":
        return {"type": "null"}
    # Printed as the value's name; the parser also takes the number, and a proto3 enum keeps
    # numbers it has no name for, which the printer then writes as numbers.
    names = {"type": "string", "enum": [value.name for value in enum.values]}
    return {"title": enum.full_name, "anyOf": [names, _integer(32, True)]}
