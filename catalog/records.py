"""What the catalog returns: plain frozen values, detached from the database, safe to hand
from the thread that read them to the event loop."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class VersionState(enum.StrEnum):
    READY = "ready"
    DELETED = "deleted"  # kept, so its number is never given again; never resolved


@dataclass(frozen=True)
class VersionMetadata:
    """What the uploader says about a version."""

    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    class_labels: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "tags": dict(self.tags),
            "class_labels": list(self.class_labels),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VersionMetadata:
        return cls(
            description=data.get("description", ""),
            tags=dict(data.get("tags", {})),
            class_labels=list(data.get("class_labels", [])),
        )


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    created: datetime


@dataclass(frozen=True)
class Version:
    model: str
    number: int
    sha256: str
    size: int
    #: Where the file is in the object store (`catalog.files`).
    file_key: str
    #: The graph's inputs and outputs, as `catalog.signature` describes them.
    signature: dict[str, Any]
    metadata: VersionMetadata
    state: VersionState
    created: datetime
    #: The aliases that point to this version, sorted.
    aliases: tuple[str, ...] = ()
    #: How many workers the model host runs for it; 0: not deployed.
    replicas: int = 0

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.number}"


@dataclass(frozen=True)
class Alias:
    model: str
    name: str
    version: int


@dataclass(frozen=True)
class Deployment:
    """A version the model host runs ``replicas`` workers for."""

    model: str
    version: int
    replicas: int

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.version}"
