"""Model names, alias names and references — the one form every API and the CLI use:

- ``name``: the model's default, the implicit alias ``latest`` (see below);
- ``name@3``: version 3 of ``name``;
- ``name@production``: the version the alias ``production`` points to.

``latest`` is reserved: it always means the model's newest version that is not deleted, so it
is never stored and cannot be set. A name or an alias follows `inferq.settings.NAME_PATTERN`;
an alias is never all digits (``name@3`` is a version)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from inferq.errors import InvalidRequest
from inferq.settings import NAME_PATTERN

LATEST = "latest"
#: Versions are numbered 1 .. MAX_VERSION (the catalog's integer column).
MAX_VERSION = 2**31 - 1
_NAME = re.compile(NAME_PATTERN)
_NUMBER = re.compile(r"[0-9]+")  # not str.isdigit(), which takes "²" and other digits


@dataclass(frozen=True)
class Ref:
    """A parsed reference: exactly one of ``version`` and ``alias`` is set."""

    model: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"{self.model}@{self.version if self.version is not None else self.alias}"


def check_model_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidRequest(
            f"invalid model name {name!r}: use 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    """An alias that may be set: a valid name, not all digits, not the reserved ``latest``."""
    if not _NAME.match(alias) or _NUMBER.fullmatch(alias):
        raise InvalidRequest(
            f"invalid alias {alias!r}: use 1 to 64 letters, digits, '_', '.' or '-', starting "
            "with a letter or digit, and not only digits (name@3 means version 3)"
        )
    if alias == LATEST:
        raise InvalidRequest(
            f"the alias {LATEST!r} is reserved: it always means the newest version"
        )
    return alias


def parse_ref(ref: str) -> Ref:
    """``name``, ``name@3`` or ``name@alias``, as in the module docstring."""
    model, sep, tail = ref.partition("@")
    check_model_name(model)
    if not sep:
        return Ref(model, alias=LATEST)
    if _NUMBER.fullmatch(tail):
        number = int(tail)
        if not 1 <= number <= MAX_VERSION:
            raise InvalidRequest(
                f"invalid reference {ref!r}: versions are numbered from 1 to {MAX_VERSION}"
            )
        return Ref(model, version=number)
    if not _NAME.match(tail):
        raise InvalidRequest(
            f"invalid reference {ref!r}: use name, name@VERSION (a number) or name@ALIAS"
        )
    return Ref(model, alias=tail)
