"""API keys in the catalog (`Catalog.create_key` ... and `catalog.keys`), each test on an
SQLite file and on the real PostgreSQL at 127.0.0.1:5432, there in a schema of its own that
is dropped after."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from catalog.db import MIGRATIONS, Catalog
from catalog.keys import SCOPES, new_token, parse_token, secret_hash, secret_matches
from catalog.records import ApiKey, NewKey
from inferq.errors import Conflict, InvalidRequest, KeyNotFound
from tests.catalog.databases import postgres_schema

Opener = Callable[[], Catalog]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a new `Catalog` on the same database each time it is called; all are closed,
    and the PostgreSQL schema dropped, after the test."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'catalog.db'}"
        else:
            url = stack.enter_context(postgres_schema("test_keys"))

        def opener() -> Catalog:
            opened = Catalog.open(url)
            stack.callback(opened.close)  # closed before the schema is dropped
            return opened

        yield opener


@pytest.fixture
def catalog(open_catalog: Opener) -> Catalog:
    return open_catalog()


def together(calls: list[Callable[[], Any]]) -> tuple[list[Any], list[BaseException]]:
    """Runs the calls at once, a thread each: what they returned and what they raised."""
    start = threading.Barrier(len(calls))
    results: list[Any] = []
    errors: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        start.wait()
        try:
            results.append(call())
        except BaseException as error:  # noqa: BLE001 - returned to the test
            errors.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results, errors


def stored_hash(catalog: Catalog, key_id: str) -> str:
    found = catalog.find_key(key_id)
    assert found is not None
    return found[1]


def test_a_token_names_its_key_and_only_its_hash_is_stored(catalog: Catalog) -> None:
    made = catalog.create_key("ci", ["predict"])
    parsed = parse_token(made.secret)
    assert parsed is not None
    key_id, secret = parsed
    assert key_id == made.key.key_id and len(key_id) == 12 and len(secret) == 43
    assert made.secret == f"iq_{key_id}_{secret}"
    assert stored_hash(catalog, key_id) == secret_hash(secret)
    assert secret_matches(secret, stored_hash(catalog, key_id))
    assert not secret_matches(
        secret[:-1] + ("A" if secret[-1] != "A" else "B"), secret_hash(secret)
    )
    assert secret not in repr(made) and made.secret not in str(made.key.to_json())


def test_new_tokens_are_well_formed_and_distinct() -> None:
    tokens = [new_token() for _ in range(200)]
    assert len({key_id for key_id, _, _ in tokens}) == 200
    for key_id, secret, token in tokens:
        assert parse_token(token) == (key_id, secret)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "iq_",
        "iq_0123456789ab",
        "iq_0123456789ab_",
        "iq_0123456789ab_" + "a" * 42,  # a secret one short
        "iq_0123456789ab_" + "a" * 44,
        "iq_0123456789AB_" + "a" * 43,  # the key id is lowercase hex
        "iq_0123456789zz_" + "a" * 43,
        "xx_0123456789ab_" + "a" * 43,
        "iq_0123456789ab-" + "a" * 43,
        "iq_0123456789ab_" + "a" * 42 + "=",
        "iq_0123456789ab_" + "a" * 42 + "\n",
        " iq_0123456789ab_" + "a" * 43,
        "iq_0123456789ab_" + "é" * 43,
        None,
        12,
    ],
)
def test_a_malformed_token_parses_as_nothing(token: object) -> None:
    assert parse_token(token) is None


def test_a_key_keeps_what_it_was_given(catalog: Catalog) -> None:
    made = catalog.create_key(
        "batch-jobs",
        ["read", "predict", "read"],
        models=["digits", "iris", "digits"],
        rate=10,
        per="minute",
        max_in_flight=4,
    )
    key = made.key
    assert key.name == "batch-jobs"
    assert key.scopes == ("predict", "read")  # each once, in SCOPES order
    assert key.models == ("digits", "iris")
    assert (key.rate, key.per, key.max_in_flight) == (10, "minute", 4)
    assert key.active and key.revoked is None and key.rotated is None
    assert key.created.tzinfo is not None
    assert catalog.get_key(key.key_id) == key
    assert catalog.list_keys() == [key]
    assert key.to_json() == {
        "key_id": key.key_id,
        "name": "batch-jobs",
        "scopes": ["predict", "read"],
        "models": ["digits", "iris"],
        "rate": 10,
        "per": "minute",
        "max_in_flight": 4,
        "created": key.created.isoformat(),
        "revoked": None,
        "rotated": None,
        "active": True,
    }


def test_a_key_without_models_or_limits_has_none(catalog: Catalog) -> None:
    key = catalog.create_key("admin", ["admin"], models=[]).key
    assert key.models is None  # every model
    assert (key.rate, key.per, key.max_in_flight) == (None, None, None)
    assert catalog.get_key(key.key_id).models is None
    assert set(SCOPES) == {"predict", "read", "admin"}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": ""}, "invalid key name"),
        ({"name": "-leading"}, "invalid key name"),
        ({"name": "x" * 65}, "invalid key name"),
        ({"name": "with space"}, "invalid key name"),
        ({"scopes": []}, "no scope"),
        ({"scopes": ["predict", "write"]}, "unknown scope(s) 'write'"),
        ({"models": ["digits@3"]}, "bare model names"),
        ({"models": ["bad name"]}, "invalid model name"),
        ({"rate": 5}, "give both rate and per"),
        ({"per": "second"}, "give both rate and per"),
        ({"rate": 5, "per": "hour"}, "per must be second or minute"),
        ({"rate": 0, "per": "second"}, "rate must be a whole number"),
        ({"rate": True, "per": "second"}, "rate must be a whole number"),
        ({"rate": 2**31, "per": "second"}, "rate must be a whole number"),
        ({"max_in_flight": -1}, "max_in_flight must be a whole number"),
        ({"max_in_flight": 1.5}, "max_in_flight must be a whole number"),
    ],
)
def test_invalid_fields_are_refused_and_nothing_is_stored(
    catalog: Catalog, fields: dict[str, Any], says: str
) -> None:
    given: dict[str, Any] = {"name": "ci", "scopes": ["predict"], **fields}
    with pytest.raises(InvalidRequest) as refused:
        catalog.create_key(**given)
    assert says in refused.value.message
    assert catalog.list_keys(include_revoked=True) == []
    assert not catalog.has_active_keys()


def test_a_name_is_unique_among_keys_not_revoked(catalog: Catalog) -> None:
    first = catalog.create_key("ci", ["predict"]).key
    with pytest.raises(Conflict) as taken:
        catalog.create_key("ci", ["read"])
    assert first.key_id in taken.value.message and taken.value.status_code == 409
    catalog.revoke_key(first.key_id)
    second = catalog.create_key("ci", ["read"]).key  # a revoked key's name is free again
    assert second.key_id != first.key_id
    assert [k.key_id for k in catalog.list_keys()] == [second.key_id]


def test_revoking_keeps_the_key_listed_with_revoked_ones_and_is_idempotent(
    catalog: Catalog,
) -> None:
    kept = catalog.create_key("kept", ["read"]).key
    gone = catalog.create_key("gone", ["predict"]).key
    assert catalog.has_active_keys()
    revoked = catalog.revoke_key(gone.key_id)
    assert not revoked.active and revoked.revoked is not None and revoked.rotated is None
    assert catalog.revoke_key(gone.key_id) == revoked  # the same time: not revoked again
    assert catalog.list_keys() == [kept]
    assert catalog.list_keys(include_revoked=True) == [kept, revoked]
    found = catalog.find_key(gone.key_id)  # still found, so the gateway can refuse it
    assert found is not None and not found[0].active
    assert catalog.has_active_keys()
    catalog.revoke_key(kept.key_id)
    assert not catalog.has_active_keys()


def test_rotating_issues_a_new_key_with_the_same_fields_and_revokes_the_old(
    catalog: Catalog,
) -> None:
    old = catalog.create_key("ci", ["predict", "read"], ["digits"], 5, "second", 2)
    new = catalog.rotate_key(old.key.key_id)
    assert isinstance(new, NewKey) and new.key.key_id != old.key.key_id
    assert new.secret != old.secret
    same = ("name", "scopes", "models", "rate", "per", "max_in_flight")
    assert [getattr(new.key, f) for f in same] == [getattr(old.key, f) for f in same]
    assert new.key.active and new.key.rotated is None
    replaced = catalog.get_key(old.key.key_id)
    assert not replaced.active and replaced.rotated == replaced.revoked
    parsed = parse_token(new.secret)
    assert parsed is not None
    assert secret_matches(parsed[1], stored_hash(catalog, new.key.key_id))
    assert not secret_matches(parsed[1], stored_hash(catalog, old.key.key_id))
    assert catalog.list_keys() == [new.key]
    with pytest.raises(Conflict, match="revoked and cannot be rotated"):
        catalog.rotate_key(old.key.key_id)


def test_an_unknown_key_is_not_found(catalog: Catalog) -> None:
    assert catalog.find_key("0123456789ab") is None
    for call in (catalog.get_key, catalog.revoke_key, catalog.rotate_key):
        with pytest.raises(KeyNotFound) as missing:
            call("0123456789ab")
        assert missing.value.status_code == 404 and "0123456789ab" in missing.value.message


def test_concurrent_creates_of_one_name_give_it_to_exactly_one(open_catalog: Opener) -> None:
    """Eight creates at once over two catalogs (as two gateways would): one key gets the
    name, the seven others are refused, whichever database holds the keys."""
    catalogs = [open_catalog(), open_catalog()]
    results, errors = together(
        [partial(catalogs[i % 2].create_key, "shared", ["predict"]) for i in range(8)]
    )
    assert len(results) == 1
    assert len(errors) == 7 and all(isinstance(e, Conflict) for e in errors), errors
    assert [k.key_id for k in catalogs[1].list_keys()] == [results[0].key.key_id]


def test_concurrent_rotations_of_one_key_make_exactly_one_replacement(
    open_catalog: Opener,
) -> None:
    catalogs = [open_catalog(), open_catalog()]
    key_id = catalogs[0].create_key("ci", ["predict"]).key.key_id
    results, errors = together([partial(c.rotate_key, key_id) for c in catalogs])
    assert len(results) == 1 and len(errors) == 1 and isinstance(errors[0], Conflict), errors
    active = catalogs[0].list_keys()
    assert [k.key_id for k in active] == [results[0].key.key_id]


def test_keys_survive_reopening(open_catalog: Opener) -> None:
    first = open_catalog()
    made = first.create_key("ci", ["read"], rate=3, per="second")
    first.close()
    again = open_catalog()
    assert again.list_keys() == [made.key]
    assert isinstance(again.get_key(made.key.key_id), ApiKey)


def test_a_catalog_at_0002_gets_the_keys_table_on_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
        assert not sa.inspect(conn).has_table("api_keys")
    engine.dispose()
    with Catalog.open(url) as catalog:
        assert not catalog.has_active_keys()
        catalog.create_key("first", ["admin"])
        assert catalog.has_active_keys()
        with catalog._engine.connect() as conn:
            indexes = {i["name"]: i for i in sa.inspect(conn).get_indexes("api_keys")}
        assert indexes["uq_api_keys_active_name"]["unique"]
