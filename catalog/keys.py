"""API keys: the token format, its hash, and the checks a key's fields pass before the
catalog stores it (`catalog.db.Catalog.create_key`).

A token reads ``iq_<key_id>_<secret>``: ``key_id`` is 12 lowercase hex characters, public
(lists show it, the catalog looks the key up by it); ``secret`` is
``secrets.token_urlsafe(32)``, 43 characters of ``[A-Za-z0-9_-]``, shown once. The catalog
keeps only the secret's SHA-256: a secret is 256 random bits, so a fast hash is right (as for
GitHub's and Stripe's tokens) and needs no salt."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from catalog.names import check_model_name
from inferq.errors import InvalidRequest
from inferq.settings import NAME_PATTERN

#: ``predict``: POST predictions at every door; ``read``: tasks, model listings, metadata,
#: metrics; ``admin``: catalog changes and keys. None implies another.
SCOPES = ("predict", "read", "admin")
#: What a rate counts per.
PERIODS = ("second", "minute")
#: The largest rate or in-flight limit (the catalog's integer columns).
MAX_LIMIT = 2**31 - 1
TOKEN_PREFIX = "iq_"
_TOKEN = re.compile(r"iq_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(NAME_PATTERN)


def new_token() -> tuple[str, str, str]:
    """A new key's ``(key_id, secret, token)``."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{TOKEN_PREFIX}{key_id}_{secret}"


def parse_token(token: object) -> tuple[str, str] | None:
    """A token's ``(key_id, secret)``; None for anything that is not a well-formed token."""
    if not isinstance(token, str):
        return None
    match = _TOKEN.fullmatch(token)
    return (match[1], match[2]) if match else None


def secret_hash(secret: str) -> str:
    """The hex SHA-256 the catalog keeps in place of ``secret``."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_sha256: str) -> bool:
    """Whether ``secret`` is the one whose hash is stored, in constant time."""
    return hmac.compare_digest(secret_hash(secret), stored_sha256)


def check_key_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(
            f"invalid key name {name!r}: use 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The key's scopes, each once, in `SCOPES` order; at least one, none unknown."""
    given = [scopes] if isinstance(scopes, str) else list(scopes)
    unknown = [s for s in given if s not in SCOPES]
    if unknown or not given:
        what = f"unknown scope(s) {', '.join(map(repr, unknown))}" if unknown else "no scope"
        raise InvalidRequest(f"{what}: a key needs one or more of {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in given)


def check_models(models: Iterable[str] | None) -> tuple[str, ...] | None:
    """The model names a key is limited to, each once; None (all models) for none. Bare
    names: ``digits`` allows ``digits@3`` and ``digits@prod`` too."""
    given = [models] if isinstance(models, str) else list(models or ())
    for name in given:
        if not isinstance(name, str) or "@" in name:
            raise InvalidRequest(
                f"invalid model name {name!r} in the key's models: give bare model names "
                "(digits allows digits@3 and digits@production)"
            )
        check_model_name(name)
    return tuple(dict.fromkeys(given)) or None


def check_limits(
    rate: int | None, per: str | None, max_in_flight: int | None
) -> tuple[int | None, str | None, int | None]:
    """``rate`` requests per ``per`` (``second`` or ``minute``; both or neither) and
    ``max_in_flight`` unfinished tasks; None: unlimited."""
    if (rate is None) != (per is None):
        raise InvalidRequest(
            "a rate needs its period and a period its rate: give both rate and per "
            f"(per: {' or '.join(PERIODS)}), or neither"
        )
    if per is not None and per not in PERIODS:
        raise InvalidRequest(f"per must be {' or '.join(PERIODS)}, not {per!r}")
    for field, value in (("rate", rate), ("max_in_flight", max_in_flight)):
        valid = isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_LIMIT
        if value is not None and not valid:
            raise InvalidRequest(
                f"{field} must be a whole number from 1 to {MAX_LIMIT}, not {value!r}"
            )
    return rate, per, max_in_flight
