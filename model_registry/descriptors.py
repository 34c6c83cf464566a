"""Protobuf descriptors that travel with a model, so a gateway can use its messages unimported.

A worker ships its request and response types as a serialized ``FileDescriptorSet``
(:func:`build_descriptor_set`); the gateway turns those bytes back into message classes
(:func:`load_message_types`). Each set is loaded into a pool of its own, never the default
pool, so two versions of one model, or a model and the gateway's own generated code, can
define the same message names without clashing.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FileDescriptor
from google.protobuf.message import DecodeError, Message

if TYPE_CHECKING:  # the stubs type a generated class's DESCRIPTOR as either implementation's
    from google._upb._message import FileDescriptor as UpbFileDescriptor


def build_descriptor_set(*message_types: type[Message]) -> bytes:
    """A serialized ``FileDescriptorSet`` of the files defining ``message_types`` and every
    file they import, transitively: each file once, dependencies before dependents."""
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(file: FileDescriptor | UpbFileDescriptor) -> None:
        if file.name in files:
            return
        for dependency in file.dependencies:
            add(dependency)
        # serialized_pb is the file exactly as protoc wrote it; CopyToProto may drop details.
        files[file.name] = descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb)

    for message_type in message_types:
        add(message_type.DESCRIPTOR.file)
    descriptor_set = descriptor_pb2.FileDescriptorSet(file=list(files.values()))
    # Deterministic bytes, so equal sets hit the same load_message_types cache entry.
    return descriptor_set.SerializeToString(deterministic=True)


class MessageTypes:
    """The message classes of one descriptor set, built in a descriptor pool of their own."""

    def __init__(self, descriptor_set: bytes) -> None:
        try:
            parsed = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
        except DecodeError as error:
            raise ValueError(f"not a serialized FileDescriptorSet: {error}") from error
        self._pool = descriptor_pool.DescriptorPool()
        for file in _dependencies_first(parsed.file):
            try:
                self._pool.Add(file)
            except TypeError as error:  # what the pool raises for a file it cannot build
                raise ValueError(f"cannot load {file.name!r}: {error}") from error
        self._names = sorted(
            f"{file.package}.{message.name}" if file.package else message.name
            for file in parsed.file
            for message in file.message_type
        )

    @property
    def pool(self) -> descriptor_pool.DescriptorPool:
        """The pool holding the set; ``json_format`` needs it to resolve ``Any`` fields."""
        return self._pool

    @property
    def names(self) -> list[str]:
        """Full names of the top-level messages the set defines, sorted."""
        return list(self._names)

    def descriptor(self, full_name: str) -> Descriptor:
        """The descriptor of message ``full_name``; ``KeyError`` if the set lacks it."""
        try:
            return self._pool.FindMessageTypeByName(full_name)
        except KeyError:
            known = ", ".join(self._names[:20]) or "none"
            raise KeyError(
                f"no message {full_name!r} in the descriptor set (top-level messages: {known})"
            ) from None

    def message_class(self, full_name: str) -> type[Message]:
        """The class of message ``full_name``; ``KeyError`` if the set lacks it."""
        return message_factory.GetMessageClass(self.descriptor(full_name))


@lru_cache(maxsize=256)
def load_message_types(descriptor_set: bytes) -> MessageTypes:
    """:class:`MessageTypes` for ``descriptor_set``, cached by content: the gateway calls this
    for every request, and building a pool costs far more than hashing a few kilobytes.

    Raises ``ValueError`` for bytes that are not a loadable, self-contained set."""
    return MessageTypes(descriptor_set)


def _dependencies_first(
    files: Sequence[descriptor_pb2.FileDescriptorProto],
) -> list[descriptor_pb2.FileDescriptorProto]:
    """``files`` reordered so each follows its imports: a pool rejects a file whose imports
    are not loaded yet, and sets from other tools need not come in that order."""
    by_name: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for file in files:
        if by_name.setdefault(file.name, file) != file:
            raise ValueError(f"the set holds two different files named {file.name!r}")
    ordered: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    visiting: set[str] = set()

    def visit(file: descriptor_pb2.FileDescriptorProto) -> None:
        if file.name in ordered:
            return
        if file.name in visiting:
            raise ValueError(f"{file.name!r} imports itself, through a cycle of imports")
        visiting.add(file.name)
        for name in file.dependency:
            if name not in by_name:
                raise ValueError(f"{file.name!r} imports {name!r}, which the set does not hold")
            visit(by_name[name])
        ordered[file.name] = file

    for file in files:
        visit(file)
    return list(ordered.values())
