"""Connections cut under load (a TCP proxy between the process and the server drops them):
the process reconnects by itself, and no accepted task is lost or stored twice."""

from __future__ import annotations

import threading
import time

import httpx

from tests.faults.conftest import MakeProxy
from tests.faults.probes import SHARED, FinalWrites, submit, wait_final
from tests.stack import Stack, wait_until

CUTS = 2


def succeeded(client: httpx.Client, task_ids: list[str]) -> int:
    return sum(client.get(f"/tasks/{t}").json()["status"] == "succeeded" for t in task_ids)


def cut_while_running(client: httpx.Client, ids: list[str], cut: object) -> None:
    """Cut the link ``CUTS`` times, each time once more tasks have finished since the last."""
    for round_ in range(1, CUTS + 1):
        wait_until(
            lambda r=round_: succeeded(client, ids) >= r * len(ids) // (CUTS + 2),
            30,
            f"progress before cut {round_}",
        )
        assert cut() > 0  # type: ignore[operator]


def test_worker_broker_link_cut_under_load(stack: Stack, make_proxy: MakeProxy) -> None:
    broker = make_proxy(SHARED.amqp_url)
    stack.start_gateway()
    stack.start_worker("sleep", INFERQ_AMQP_URL=broker.url(SHARED.amqp_url))
    stack.wait_live("sleep")
    with FinalWrites(stack.namespace) as writes, httpx.Client(base_url=stack.url) as client:
        ids = [submit(client, "sleep", {"ms": 50 + i}) for i in range(40)]
        cut_while_running(client, ids, broker.cut)
        views = wait_final(client, ids, timeout=60)
    assert broker.accepted >= CUTS + 1  # it reconnected after each cut
    assert all(v["status"] == "succeeded" for v in views.values()), stack.logs()
    assert writes.more_than_once() == {}


def test_worker_redis_link_cut_under_load(stack: Stack, make_proxy: MakeProxy) -> None:
    redis = make_proxy(SHARED.redis_url)
    stack.start_gateway()
    stack.start_worker("sleep", INFERQ_REDIS_URL=redis.url(SHARED.redis_url))
    stack.wait_live("sleep")
    with FinalWrites(stack.namespace) as writes, httpx.Client(base_url=stack.url) as client:
        ids = [submit(client, "sleep", {"ms": 50 + i}) for i in range(40)]
        cut_while_running(client, ids, redis.cut)
        views = wait_final(client, ids, timeout=60)
    assert all(v["status"] == "succeeded" for v in views.values()), stack.logs()
    assert writes.more_than_once() == {}


def test_gateway_broker_link_cut_while_posting(stack: Stack, make_proxy: MakeProxy) -> None:
    """Requests during a cut may be refused (503, the client retries); none may hang, and
    every task answered 202 ends succeeded."""
    publish_timeout_s = 2.0
    broker = make_proxy(SHARED.amqp_url)
    stack.env["INFERQ_AMQP_URL"] = broker.url(SHARED.amqp_url)
    stack.env["INFERQ_PUBLISH_TIMEOUT_S"] = str(publish_timeout_s)
    stack.start_gateway()
    stack.start_worker("sleep", INFERQ_AMQP_URL=SHARED.amqp_url)  # not through the proxy
    stack.wait_live("sleep")

    answers: list[tuple[int, float, str | None]] = []  # status, seconds, task id
    failures: list[BaseException] = []  # what stopped the poster: the test raises it
    done = threading.Event()

    def post_until_done() -> None:
        try:
            with httpx.Client(base_url=stack.url, timeout=30) as client:
                while not done.is_set():
                    started = time.monotonic()
                    response = client.post("/predict/sleep", json={"ms": 5})
                    accepted = response.status_code == 202
                    task_id = response.json()["task_id"] if accepted else None
                    answers.append((response.status_code, time.monotonic() - started, task_id))
        except Exception as error:  # noqa: BLE001 - a request broken off, a 202 without an id
            failures.append(error)

    def accepted_since(count: int) -> int:
        if failures:  # no waiting for 202s from a poster that died: its error fails the test
            raise failures[0]
        return sum(status == 202 for status, _, _ in answers[count:])

    poster = threading.Thread(target=post_until_done)
    poster.start()
    try:
        count = 0
        for _ in range(CUTS):
            # The gateway accepts again, by itself, after each cut (and before the first).
            wait_until(lambda c=count: accepted_since(c) >= 10, 30, "202s since the last cut")
            count = len(answers)
            assert broker.cut() > 0, stack.logs()
        wait_until(lambda c=count: accepted_since(c) >= 10, 30, "202s after the last cut")
    finally:
        done.set()
        poster.join(35)
    assert not poster.is_alive(), "a request hung past the client's 30 s timeout"
    if failures:
        raise failures[0]

    statuses = {status for status, _, _ in answers}
    assert statuses <= {202, 503}, answers
    slowest = max(seconds for _, seconds, _ in answers)
    assert slowest < publish_timeout_s + 2, slowest
    assert broker.accepted >= CUTS + 1
    with httpx.Client(base_url=stack.url) as client:
        accepted = [task_id for _, _, task_id in answers if task_id]
        views = wait_final(client, accepted, timeout=60)
    assert all(v["status"] == "succeeded" for v in views.values()), stack.logs()
