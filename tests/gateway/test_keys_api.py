"""The admin API for API keys (`/keys`) through a real gateway process: create, list, show,
revoke and rotate, with the answers a client reads (201/200/404/409/422 and their bodies),
and the token given only when a key is made. The calls carry an admin key made in the
catalog before the gateway started (as `inferq keys create` makes the first one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from catalog.db import Catalog
from catalog.keys import parse_token, secret_matches
from tests.conftest import make_stack
from tests.stack import Stack


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    """A gateway of the module's own, and the token of an admin key made before it started."""
    for stack in make_stack(tmp_path_factory):
        with Catalog.open(stack.env["INFERQ_CATALOG_URL"]) as catalog:
            token = catalog.create_key("test-admin", ["admin", "read"]).secret
        stack.start_gateway()
        yield stack, token


@pytest.fixture
def admin(gateway: tuple[Stack, str]) -> Iterator[httpx.Client]:
    stack, token = gateway
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as client:
        yield client


def stored_hash(gateway: tuple[Stack, str], key_id: str) -> str:
    """The secret's hash, as the gateway's catalog holds it."""
    with Catalog.open(gateway[0].env["INFERQ_CATALOG_URL"]) as catalog:
        found = catalog.find_key(key_id)
    assert found is not None
    return found[1]


def create(admin: httpx.Client, **body: Any) -> httpx.Response:
    return admin.post("/keys", json={"scopes": ["predict"], **body})


def test_a_new_key_is_answered_201_with_its_token_once(
    admin: httpx.Client, gateway: tuple[Stack, str]
) -> None:
    made = create(
        admin,
        name="batch-jobs",
        scopes=["read", "predict"],
        models=["digits"],
        rate=10,
        per="second",
        max_in_flight=4,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    parsed = parse_token(body["secret"])
    assert parsed is not None and parsed[0] == body["key_id"]
    assert secret_matches(parsed[1], stored_hash(gateway, body["key_id"]))
    assert made.headers["location"] == f"/keys/{body['key_id']}"
    assert made.headers["cache-control"] == "no-store"
    assert {k: body[k] for k in ("name", "scopes", "models", "rate", "per", "max_in_flight")} == {
        "name": "batch-jobs",
        "scopes": ["predict", "read"],
        "models": ["digits"],
        "rate": 10,
        "per": "second",
        "max_in_flight": 4,
    }
    assert body["active"] is True and body["revoked"] is None and body["rotated"] is None

    shown = admin.get(f"/keys/{body['key_id']}")
    assert shown.status_code == 200
    assert shown.json() == {k: v for k, v in body.items() if k != "secret"}
    listed = admin.get("/keys")
    assert listed.status_code == 200
    assert shown.json() in listed.json()["keys"]
    for answer in (shown, listed, admin.get("/keys?all=true")):
        assert parsed[1] not in answer.text  # the secret, never again
        assert "secret" not in answer.text and "sha256" not in answer.text


def test_a_taken_name_is_409(admin: httpx.Client) -> None:
    first = create(admin, name="twice")
    assert first.status_code == 201
    again = create(admin, name="twice", scopes=["read"])
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["type"] == "Conflict" and first.json()["key_id"] in error["message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "x"}, "body.scopes: Field required"),
        ({"scopes": ["predict"]}, "body.name: Field required"),
        ({"name": "x", "scopes": []}, "body.scopes"),
        ({"name": "x", "scopes": ["write"]}, "body.scopes.0"),
        ({"name": "x", "scopes": "predict"}, "body.scopes"),
        ({"name": "x", "scopes": ["predict"], "rate": True, "per": "second"}, "body.rate"),
        ({"name": "x", "scopes": ["predict"], "rate": "5", "per": "second"}, "body.rate"),
        ({"name": "x", "scopes": ["predict"], "rate": 0, "per": "second"}, "body.rate"),
        ({"name": "x", "scopes": ["predict"], "rate": 2**40, "per": "second"}, "body.rate"),
        ({"name": "x", "scopes": ["predict"], "rate": 5, "per": "hour"}, "body.per"),
        ({"name": "x", "scopes": ["predict"], "rate": 5}, "give both rate and per"),
        ({"name": "x", "scopes": ["predict"], "max_in_flight": -2}, "body.max_in_flight"),
        ({"name": "x", "scopes": ["predict"], "models": ["digits@3"]}, "bare model names"),
        ({"name": "x", "scopes": ["predict"], "models": "digits"}, "body.models"),
        ({"name": "no spaces", "scopes": ["predict"]}, "invalid key name"),
        ({"name": "x" * 65, "scopes": ["predict"]}, "invalid key name"),
        ({"name": 7, "scopes": ["predict"]}, "body.name"),
        ({"name": "x", "scopes": ["predict"], "scope": "admin"}, "body.scope: Extra inputs"),
        (["x"], "body"),
    ],
)
def test_invalid_bodies_are_422_saying_what_is_wrong(
    admin: httpx.Client, body: Any, says: str
) -> None:
    refused = admin.post("/keys", json=body)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["type"] == "InvalidRequest" and says in error["message"]
    assert "x" not in [k["name"] for k in admin.get("/keys").json()["keys"]]


def test_a_body_that_is_not_json_is_422(admin: httpx.Client) -> None:
    refused = admin.post("/keys", content=b"{name", headers={"Content-Type": "application/json"})
    assert refused.status_code == 422
    assert refused.json()["error"]["type"] == "InvalidRequest"


def test_an_unknown_key_is_404_and_a_malformed_id_422(admin: httpx.Client) -> None:
    for method, path in (
        ("GET", "/keys/0123456789ab"),
        ("DELETE", "/keys/0123456789ab"),
        ("POST", "/keys/0123456789ab/rotate"),
    ):
        missing = admin.request(method, path)
        assert missing.status_code == 404, (method, path)
        assert missing.json()["error"]["type"] == "KeyNotFound"
    malformed = admin.get("/keys/not-a-key-id")
    assert malformed.status_code == 422
    assert "path.key_id" in malformed.json()["error"]["message"]


def test_revoking_answers_the_revoked_key_and_it_leaves_the_list(admin: httpx.Client) -> None:
    key_id = create(admin, name="short-lived").json()["key_id"]
    revoked = admin.delete(f"/keys/{key_id}")
    assert revoked.status_code == 200
    body = revoked.json()
    assert body["key_id"] == key_id and body["active"] is False and body["revoked"]
    assert "secret" not in body
    assert admin.delete(f"/keys/{key_id}").json() == body  # again: as it is
    assert key_id not in [k["key_id"] for k in admin.get("/keys").json()["keys"]]
    every = admin.get("/keys", params={"all": "true"}).json()["keys"]
    assert body in every
    refused = admin.post(f"/keys/{key_id}/rotate")
    assert refused.status_code == 409
    assert "revoked and cannot be rotated" in refused.json()["error"]["message"]
    assert create(admin, name="short-lived").status_code == 201  # the name is free again


def test_rotating_answers_a_new_key_and_revokes_the_old(
    admin: httpx.Client, gateway: tuple[Stack, str]
) -> None:
    old = create(admin, name="rotated", models=["iris"], max_in_flight=2).json()
    new = admin.post(f"/keys/{old['key_id']}/rotate")
    assert new.status_code == 201, new.text
    body = new.json()
    parsed = parse_token(body["secret"])
    assert parsed is not None and parsed[0] == body["key_id"] != old["key_id"]
    assert body["secret"] != old["secret"]
    assert secret_matches(parsed[1], stored_hash(gateway, body["key_id"]))
    assert new.headers["cache-control"] == "no-store"
    same = ("name", "scopes", "models", "rate", "per", "max_in_flight")
    assert [body[f] for f in same] == [old[f] for f in same]
    replaced = admin.get(f"/keys/{old['key_id']}").json()
    assert replaced["active"] is False and replaced["rotated"] == replaced["revoked"]
    names = [k["key_id"] for k in admin.get("/keys").json()["keys"] if k["name"] == "rotated"]
    assert names == [body["key_id"]]


def test_the_keys_routes_are_documented(admin: httpx.Client) -> None:
    paths = admin.get("/openapi.json").json()["paths"]
    summaries = {
        (method, path): operation.get("summary")
        for path, operations in paths.items()
        if path.startswith("/keys")
        for method, operation in operations.items()
    }
    assert set(summaries) == {
        ("post", "/keys"),
        ("get", "/keys"),
        ("get", "/keys/{key_id}"),
        ("delete", "/keys/{key_id}"),
        ("post", "/keys/{key_id}/rotate"),
    }
    assert all(summaries.values())
    schema = paths["/keys"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema  # the body's fields, from KeyRequest
