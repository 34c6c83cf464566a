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


@dataclass(frozen=True)
class ApiKey:
    """An API key as the catalog keeps it, without its secret (`catalog.keys`)."""

    #: Public: lists show it; a token names its key by it.
    key_id: str
    name: str
    #: Some of `catalog.keys.SCOPES`, in that order.
    scopes: tuple[str, ...]
    #: The model names the key may use (bare names); None: every model.
    models: tuple[str, ...] | None
    #: Requests per ``per`` (``second`` or ``minute``); None: unlimited.
    rate: int | None
    per: str | None
    #: Tasks accepted and not yet ended; None: unlimited.
    max_in_flight: int | None
    created: datetime
    revoked: datetime | None = None
    #: When the key was replaced by a new one (`catalog.db.Catalog.rotate_key`), which also
    #: revoked it; None for a key never rotated.
    rotated: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": list(self.scopes),
            "models": list(self.models) if self.models is not None else None,
            "rate": self.rate,
            "per": self.per,
            "max_in_flight": self.max_in_flight,
            "created": self.created.isoformat(),
            "revoked": self.revoked.isoformat() if self.revoked else None,
            "rotated": self.rotated.isoformat() if self.rotated else None,
            "active": self.active,
        }


@dataclass(frozen=True)
class NewKey:
    """A key just made, with its token (``iq_<key_id>_<secret>``): the only time the token
    is known; the catalog keeps its hash."""

    key: ApiKey
    secret: str = field(repr=False)
