"""Who sends a request (`Caller`: the API key a front door's authentication found, see
`api_service.core.auth`) and the limits its key has. Anonymous callers are None."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyLimits:
    """An API key's limits, shared by every gateway (`api_service.core.limits`); None: none."""

    rate: int | None = None  # requests per ``per_s``
    per_s: float = 1.0
    max_in_flight: int | None = None  # tasks accepted and not yet ended

    @property
    def any(self) -> bool:
        return self.rate is not None or self.max_in_flight is not None


NO_LIMITS = KeyLimits()


@dataclass(frozen=True)
class Caller:
    """Who sends a request: the API key a front door's authentication found."""

    name: str  # the key's name (logs, metrics, the worker)
    scopes: frozenset[str] = frozenset()
    key_id: str = ""  # the key's public id: its tasks' owner
    #: The models the key may use (bare names); None: all.
    models: frozenset[str] | None = None
    limits: KeyLimits = NO_LIMITS

    def may_use(self, model: str) -> bool:
        """Whether the key may use ``model`` (a reference: ``name``, ``name@3``, ...)."""
        return self.models is None or model.partition("@")[0] in self.models


def owner_of(caller: Caller | None) -> str:
    """The owner a caller's tasks get, and the one whose tasks it may read ("": anonymous)."""
    return caller.key_id if caller is not None else ""
