"""``inferq keys``: create, list, revoke and rotate API keys in the catalog itself
(``INFERQ_CATALOG_URL``), not through a gateway, since the first key has to come from
somewhere (as Django's ``createsuperuser``). A new key's token goes to stdout, alone, so that
``TOKEN=$(inferq keys create ...)`` holds it; what the key is goes to stderr. A refused call
prints its message and exits 1; a malformed command line exits 2."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from catalog.keys import PERIODS, SCOPES
from catalog.records import ApiKey, NewKey
from inferq.errors import InferqError
from inferq.settings import CatalogSettings

if TYPE_CHECKING:
    from catalog.db import Catalog

COLUMNS = ("KEY ID", "NAME", "SCOPES", "MODELS", "LIMITS", "CREATED", "REVOKED")


def add_key_verbs(keys: argparse.ArgumentParser) -> None:
    verbs = keys.add_subparsers(dest="verb", metavar="VERB", required=True)
    create = verbs.add_parser("create", help="a new key; prints its token, once")
    create.add_argument("name", help="what the key is for (unique among keys not revoked)")
    create.add_argument(
        "--scopes", required=True, type=_names, help=f"some of {','.join(SCOPES)}, comma-separated"
    )
    create.add_argument(
        "--models", type=_names, help="model names the key may use, comma-separated (default: all)"
    )
    create.add_argument("--rate", type=int, help="requests allowed per --per (default: no limit)")
    create.add_argument("--per", choices=PERIODS, help="the period of --rate")
    create.add_argument(
        "--max-in-flight", type=int, help="unfinished tasks the key may hold (default: no limit)"
    )
    listing = verbs.add_parser("list", help="the keys (no secrets)")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    revoke = verbs.add_parser("revoke", help="revoke a key (gateways refuse it within seconds)")
    revoke.add_argument("key_id")
    rotate = verbs.add_parser("rotate", help="replace a key with a new one; revokes the old")
    rotate.add_argument("key_id")


def run_keys(args: argparse.Namespace) -> int:
    # Here: the other commands (the gateway's workers ...) need no SQLAlchemy at start.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from catalog.db import Catalog

    verb: Callable[[Catalog, argparse.Namespace], int] = VERBS[args.verb]
    url = CatalogSettings().catalog_url
    logging.getLogger("alembic").setLevel(logging.WARNING)  # a new catalog's migrations
    try:
        with Catalog.open(url) as catalog:
            return verb(catalog, args)
    except InferqError as error:
        print(f"inferq keys: {error.message}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        print(f"inferq keys: cannot use the catalog at {shown}: {reason}", file=sys.stderr)
        return 1


def create_key(catalog: Catalog, args: argparse.Namespace) -> int:
    made = catalog.create_key(
        args.name, args.scopes, args.models, args.rate, args.per, args.max_in_flight
    )
    print(f"created key {made.key.key_id} ({_describe(made.key)})", file=sys.stderr)
    return _show_token(made)


def list_keys(catalog: Catalog, args: argparse.Namespace) -> int:
    keys = catalog.list_keys(include_revoked=args.all)
    if not keys:
        print("no keys" if args.all else "no active keys (--all lists revoked ones too)")
        return 0
    rows = [COLUMNS, *(_row(key) for key in keys)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def revoke_key(catalog: Catalog, args: argparse.Namespace) -> int:
    key = catalog.revoke_key(args.key_id)
    print(
        f"revoked key {key.key_id} ({key.name}) at {_moment(key.revoked)}; gateways refuse it "
        "within INFERQ_KEY_CACHE_S (2 s by default)"
    )
    return 0


def rotate_key(catalog: Catalog, args: argparse.Namespace) -> int:
    made = catalog.rotate_key(args.key_id)
    print(
        f"revoked key {args.key_id}; its replacement is key {made.key.key_id} "
        f"({_describe(made.key)})",
        file=sys.stderr,
    )
    return _show_token(made)


VERBS: dict[str, Callable[[Catalog, argparse.Namespace], int]] = {
    "create": create_key,
    "list": list_keys,
    "revoke": revoke_key,
    "rotate": rotate_key,
}


def _show_token(made: NewKey) -> int:
    print(made.secret)
    print(
        "This token will not be shown again: store it now (the catalog keeps only its hash). "
        "Send it as 'Authorization: Bearer <token>' or 'X-API-Key: <token>'.",
        file=sys.stderr,
    )
    return 0


def _row(key: ApiKey) -> tuple[str, ...]:
    revoked = _moment(key.revoked) + (" (rotated)" if key.rotated else "")
    return (
        key.key_id,
        key.name,
        ",".join(key.scopes),
        ",".join(key.models) if key.models else "all",
        _limits(key),
        _moment(key.created),
        revoked,
    )


def _describe(key: ApiKey) -> str:
    models = ",".join(key.models) if key.models else "all"
    return f"{key.name}: scopes {','.join(key.scopes)}; models {models}; limits {_limits(key)}"


def _limits(key: ApiKey) -> str:
    limits = []
    if key.rate is not None:
        limits.append(f"{key.rate}/{key.per}")
    if key.max_in_flight is not None:
        limits.append(f"{key.max_in_flight} in flight")
    return ", ".join(limits) or "none"


def _moment(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _names(text: str) -> list[str]:
    """``a,b`` as ``["a", "b"]``, spaces and empty items left out."""
    return [part.strip() for part in text.split(",") if part.strip()]
