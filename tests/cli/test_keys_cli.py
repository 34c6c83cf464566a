"""`inferq keys ...`, the console script as a user runs it, on a catalog of the test's own (an
SQLite file): the token it prints once works and matches what the catalog stored, revoking
and rotating show in the list, and a refused call or a bad command line says what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from catalog.db import Catalog
from catalog.keys import parse_token, secret_matches

CONSOLE = str(Path(sys.executable).parent / "inferq")


@pytest.fixture
def catalog_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.db'}"


def inferq_keys(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["INFERQ_CATALOG_URL"] = url
    return subprocess.run(
        [CONSOLE, "keys", *args], env=env, capture_output=True, text=True, timeout=60
    )


def table(listed: str) -> dict[str, list[str]]:
    """`inferq keys list`'s rows by key id: each row's cells (split on runs of 2+ spaces)."""
    lines = listed.splitlines()
    assert lines[0].split() == [
        "KEY",
        "ID",
        "NAME",
        "SCOPES",
        "MODELS",
        "LIMITS",
        "CREATED",
        "REVOKED",
    ]
    rows = [[cell for cell in line.split("  ") if cell.strip()] for line in lines[1:]]
    return {row[0]: [cell.strip() for cell in row] for row in rows}


def test_create_prints_a_working_token_once(catalog_url: str) -> None:
    created = inferq_keys(
        catalog_url, "create", "ci", "--scopes", "predict,read", "--models", "digits,iris",
        "--rate", "10", "--per", "second", "--max-in-flight", "4",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert created.stdout == token + "\n"  # alone on stdout: TOKEN=$(inferq keys create ...)
    parsed = parse_token(token)
    assert parsed is not None
    key_id, secret = parsed
    assert f"created key {key_id} (ci: scopes predict,read; models digits,iris" in created.stderr
    assert "will not be shown again" in created.stderr
    with Catalog.open(catalog_url) as catalog:
        found = catalog.find_key(key_id)
        assert found is not None and secret_matches(secret, found[1])
        key = found[0]
        assert (key.scopes, key.models) == (("predict", "read"), ("digits", "iris"))
        assert (key.rate, key.per, key.max_in_flight) == (10, "second", 4)

    listed = inferq_keys(catalog_url, "list")
    assert listed.returncode == 0, listed.stderr
    assert secret not in listed.stdout + listed.stderr  # never shown again
    row = table(listed.stdout)[key_id]
    assert row[1:5] == ["ci", "predict,read", "digits,iris", "10/second, 4 in flight"]
    assert row[6] == "-"


def test_revoke_and_rotate_show_in_the_list(catalog_url: str) -> None:
    first = parse_token(
        inferq_keys(catalog_url, "create", "ci", "--scopes", "predict").stdout.strip()
    )
    admin = parse_token(
        inferq_keys(catalog_url, "create", "ops", "--scopes", "admin").stdout.strip()
    )
    assert first is not None and admin is not None

    rotated = inferq_keys(catalog_url, "rotate", first[0])
    assert rotated.returncode == 0, rotated.stderr
    new = parse_token(rotated.stdout.strip())
    assert new is not None and new[0] != first[0]
    assert f"revoked key {first[0]}; its replacement is key {new[0]} (ci:" in rotated.stderr
    assert "will not be shown again" in rotated.stderr
    with Catalog.open(catalog_url) as catalog:
        found = catalog.find_key(new[0])
        assert found is not None and secret_matches(new[1], found[1])

    revoked = inferq_keys(catalog_url, "revoke", admin[0])
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.startswith(f"revoked key {admin[0]} (ops) at ")

    active = table(inferq_keys(catalog_url, "list").stdout)
    assert list(active) == [new[0]]
    every = table(inferq_keys(catalog_url, "list", "--all").stdout)
    assert list(every) == [first[0], admin[0], new[0]]
    assert every[first[0]][6].endswith("Z (rotated)")
    assert every[admin[0]][6].endswith("Z") and "rotated" not in every[admin[0]][6]
    assert every[new[0]][6] == "-" and every[new[0]][2] == "predict"


def test_a_refused_call_says_why_and_exits_1(catalog_url: str) -> None:
    assert inferq_keys(catalog_url, "create", "ci", "--scopes", "predict").returncode == 0
    taken = inferq_keys(catalog_url, "create", "ci", "--scopes", "read")
    assert taken.returncode == 1 and taken.stdout == ""
    assert "a key named 'ci' exists" in taken.stderr
    unknown = inferq_keys(catalog_url, "create", "other", "--scopes", "predict,write")
    assert unknown.returncode == 1 and "unknown scope(s) 'write'" in unknown.stderr
    half = inferq_keys(catalog_url, "create", "other", "--scopes", "predict", "--rate", "5")
    assert half.returncode == 1 and "give both rate and per" in half.stderr
    missing = inferq_keys(catalog_url, "revoke", "0123456789ab")
    assert missing.returncode == 1 and "no key '0123456789ab'" in missing.stderr
    key_id = table(inferq_keys(catalog_url, "list").stdout).popitem()[0]
    assert inferq_keys(catalog_url, "revoke", key_id).returncode == 0
    again = inferq_keys(catalog_url, "rotate", key_id)
    assert again.returncode == 1 and "revoked and cannot be rotated" in again.stderr
    assert "no active keys" in inferq_keys(catalog_url, "list").stdout


def test_a_malformed_command_line_exits_2(catalog_url: str, tmp_path: Path) -> None:
    for args in (
        (),
        ("create", "ci"),  # no --scopes
        ("create", "ci", "--scopes", "predict", "--per", "hour"),
        ("create", "ci", "--scopes", "predict", "--rate", "many", "--per", "second"),
        ("revoke",),
    ):
        wrong = inferq_keys(catalog_url, *args)
        assert wrong.returncode == 2, args
        assert "usage: inferq keys" in wrong.stderr
    assert not (tmp_path / "catalog.db").exists()  # nothing was opened


def test_a_catalog_that_cannot_be_reached_says_where(tmp_path: Path) -> None:
    down = inferq_keys("postgresql+psycopg://someone:hunter2@127.0.0.1:9/inferq", "list")
    assert down.returncode == 1
    assert "cannot use the catalog at postgresql+psycopg://someone:***@127.0.0.1:9/inferq" in (
        down.stderr
    )
    assert "hunter2" not in down.stderr
