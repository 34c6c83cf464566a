"""API keys through the whole system, as real processes: the caller's identity reaches the
worker (the model reads it, its log line names it), a key's tasks in flight are held to its
limit and freed as the worker finishes them, and two gateways share one key's rate, held
within a few percent under concurrent load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from catalog.db import Catalog
from catalog.records import NewKey
from inferq.errors import Unauthenticated
from inferq_client import Client
from tests.conftest import make_stack
from tests.stack import Stack

pytestmark = pytest.mark.slow

WHOAMI = "tests.models.whoami:WhoAmI"


def bearer(key: NewKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.secret}"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, NewKey]]]:
    """Two gateways (INFERQ_AUTH=on) of one namespace and catalog, a whoami and a sleep
    worker, and the keys: alice, bob, slots (2 tasks in flight), rated (40 per second)."""
    for stack in make_stack(tmp_path_factory, INFERQ_AUTH="on", INFERQ_KEY_CACHE_S="0.5"):
        with Catalog.open(stack.env["INFERQ_CATALOG_URL"]) as catalog:
            keys = {
                "alice": catalog.create_key("alice", ["predict", "read"]),
                "bob": catalog.create_key("bob", ["predict", "read"]),
                "slots": catalog.create_key("slots", ["predict", "read"], max_in_flight=2),
                "rated": catalog.create_key("rated", ["predict"], rate=20, per="second"),
            }
        stack.api_key = keys["alice"].secret
        first = stack.start_gateway()
        stack.start_gateway()
        stack.urls = [first, stack.url]  # type: ignore[attr-defined]
        stack.start_worker(WHOAMI)
        stack.start_worker("sleep")
        stack.wait_live("whoami")
        stack.wait_live("sleep")
        yield stack, keys


def test_the_model_reads_who_sent_each_task_and_the_worker_logs_it(
    keyed: tuple[Stack, dict[str, NewKey]],
) -> None:
    stack, keys = keyed

    async def send(name: str, n: int) -> tuple[str, str]:
        async with httpx.AsyncClient(base_url=stack.url, headers=bearer(keys[name])) as client:
            answer = await client.post(
                "/predict/whoami?wait=10", json={"data": f"{name}-{n}"}, timeout=30
            )
        assert answer.status_code == 200, answer.text
        return f"{name}-{n}", answer.json()["result"]["reply"]

    async def both() -> list[tuple[str, str]]:  # at once: alice's and bob's share batches
        return await asyncio.gather(*(send(name, n) for n in range(8) for name in ("alice", "bob")))

    for data, reply in asyncio.run(both()):
        name = data.partition("-")[0]
        assert reply == f"{data} from {name} ({keys[name].key.key_id})"
    log = next(p for p in stack.log_files if p.name.startswith("tests.models.whoami"))
    assert ", key alice" in log.read_text() and ", key bob" in log.read_text()


def test_a_key_holds_at_most_its_tasks_in_flight_and_the_worker_frees_them(
    keyed: tuple[Stack, dict[str, NewKey]],
) -> None:
    stack, keys = keyed
    with httpx.Client(base_url=stack.url, headers=bearer(keys["slots"]), timeout=30) as client:
        held = [client.post("/predict/sleep", json={"ms": 1500}) for _ in range(2)]
        assert [a.status_code for a in held] == [202, 202]
        refused = client.post("/predict/sleep", json={"ms": 1})
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "RateLimited"
        assert refused.json()["error"]["limit"] == "in_flight"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Another key is not held back by this one's tasks.
        other = httpx.post(
            f"{stack.url}/predict/sleep", json={"ms": 1}, headers=bearer(keys["bob"]), timeout=30
        )
        assert other.status_code == 202
        for answer in held:  # once they end, their slots are free again
            done = client.get(f"/tasks/{answer.json()['task_id']}?wait=10")
            assert done.json()["status"] == "succeeded"
        again = client.post("/predict/sleep?wait=10", json={"ms": 1})
        assert again.status_code == 200, again.text
    counted = {
        outcome: stack.metric("inferq_key_requests_total", key="slots", outcome=outcome)
        for outcome in ("admitted", "in_flight_limited")
    }
    assert counted == {"admitted": 3, "in_flight_limited": 1}


def test_two_gateways_hold_one_keys_rate_between_them(
    keyed: tuple[Stack, dict[str, NewKey]],
) -> None:
    stack, keys = keyed
    rate, seconds, clients = 20, 4.0, 16
    urls: list[str] = stack.urls  # type: ignore[attr-defined]
    counts = {"admitted": 0, "refused": 0, "other": 0}

    async def hammer(client: httpx.AsyncClient, until: float) -> None:
        while time.monotonic() < until:
            answer = await client.post("/predict/whoami", json={"data": "x"})
            if answer.status_code == 202:
                counts["admitted"] += 1
            elif answer.status_code == 429:
                assert int(answer.headers["retry-after"]) >= 1
                counts["refused"] += 1
            else:
                counts["other"] += 1

    async def run() -> float:
        opened = [
            httpx.AsyncClient(base_url=urls[i % 2], headers=bearer(keys["rated"]), timeout=30)
            for i in range(clients)
        ]
        # Connected, and the key known to both gateways, before the clock starts (a call
        # outside the key's scope charges nothing): the demand is far over the rate at once.
        await asyncio.gather(*(c.get("/models/whoami") for c in opened))
        started = time.monotonic()
        await asyncio.gather(*(hammer(c, started + seconds) for c in opened))
        elapsed = time.monotonic() - started
        await asyncio.gather(*(c.aclose() for c in opened))
        return elapsed

    elapsed = asyncio.run(run())
    assert counts["other"] == 0, counts
    assert counts["refused"] > 2 * counts["admitted"]  # the clients asked for far more
    # A full burst (the rate) at the start, then the rate: within a few percent.
    expected = rate + rate * elapsed
    assert abs(counts["admitted"] - expected) <= 0.05 * expected, (counts, elapsed)


def test_the_python_client_and_the_cli_send_the_key(
    keyed: tuple[Stack, dict[str, NewKey]], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, keys = keyed
    monkeypatch.delenv("INFERQ_API_KEY", raising=False)
    with Client(stack.url, api_key=keys["alice"].secret) as client:
        task = client.predict("whoami", {"data": "lib"}, wait=10)
    assert task.output()["reply"] == f"lib from alice ({keys['alice'].key.key_id})"
    with Client(stack.url) as anonymous, pytest.raises(Unauthenticated):
        anonymous.predict("whoami", {"data": "lib"}, wait=10)

    cli = stack.spawn_console(
        "predict",
        "predict",
        "whoami",
        '{"data": "cli"}',
        "--url",
        stack.url,
        INFERQ_API_KEY=keys["bob"].secret,
    )
    assert cli.wait(timeout=60) == 0, stack.log_of(cli)
    assert f"cli from bob ({keys['bob'].key.key_id})" in stack.log_of(cli)
