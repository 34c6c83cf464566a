"""A gateway that requires API keys, for the auth tests of each door (`test_auth_doors`,
`test_auth_grpc`: two files, since one process cannot import both tritonclient.grpc and the
gateway's gRPC messages): ``INFERQ_AUTH=on``, the keys made in its catalog before it starts,
and helpers that send them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from catalog.db import Catalog
from catalog.keys import parse_token
from load_testing.processes import Popen
from tests.conftest import make_stack
from tests.stack import Stack

#: How long the test gateways trust a key lookup: how long a revoked key may still work.
KEY_CACHE_S = 0.5
#: A well-formed token of no key.
UNKNOWN_TOKEN = "iq_0123456789ab_" + "A" * 43


@dataclass(frozen=True)
class Keys:
    """The tokens of the gateway's keys, by what they may do."""

    admin: str  # admin only
    user: str  # predict and read
    other: str  # predict and read: another owner
    reader: str  # read only
    model_a: str  # predict and read, model_a only
    revoked: str  # predict, read and admin, revoked


def keyed_gateway(
    tmp_path_factory: pytest.TempPathFactory, models: tuple[str, ...]
) -> Iterator[tuple[Stack, Keys]]:
    """A gateway of its own namespace with `Keys`, and a live worker of each of ``models``."""
    env = {
        "INFERQ_AUTH": "on",
        "INFERQ_KEY_CACHE_S": str(KEY_CACHE_S),
        "INFERQ_MODEL_CHANGES": "loopback",  # changes then need the admin scope only
    }
    for stack in make_stack(tmp_path_factory, **env):
        with Catalog.open(stack.env["INFERQ_CATALOG_URL"]) as catalog:
            revoked = catalog.create_key("revoked", ["predict", "read", "admin"])
            catalog.revoke_key(revoked.key.key_id)
            keys = Keys(
                admin=catalog.create_key("admin", ["admin"]).secret,
                user=catalog.create_key("user", ["predict", "read"]).secret,
                other=catalog.create_key("other", ["predict", "read"]).secret,
                reader=catalog.create_key("reader", ["read"]).secret,
                model_a=catalog.create_key("only-a", ["predict", "read"], ["model_a"]).secret,
                revoked=revoked.secret,
            )
        stack.start_gateway()
        workers = [stack.start_worker(model) for model in models]
        for model in models:
            wait_live(stack, keys.reader, model, workers)
        yield stack, keys


def wait_live(stack: Stack, token: str, model: str, workers: list[Popen]) -> None:
    """`Stack.wait_live`, asking with a key."""

    def live() -> bool:
        answer = httpx.get(f"{stack.url}/models/{model}", headers=bearer(token), timeout=5)
        return answer.status_code == 200 and bool(answer.json().get("live_workers"))

    stack.wait_for(live, 60, f"a live {model} worker", workers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def key_id(token: str) -> str:
    parsed = parse_token(token)
    assert parsed is not None
    return parsed[0]


def new_key(stack: Stack, admin: str, name: str, scopes: list[str]) -> str:
    """The token of a key made through ``POST /keys``."""
    made = httpx.post(
        f"{stack.url}/keys", json={"name": name, "scopes": scopes}, headers=bearer(admin)
    )
    assert made.status_code == 201, made.text
    return made.json()["secret"]  # type: ignore[no-any-return]
