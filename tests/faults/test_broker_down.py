"""Contract 3: a broker that is down answers 503 within a bounded time; no request hangs.

The gateway's link to RabbitMQ goes through a proxy, which makes the broker either refuse
every connection (down) or swallow every byte (a network partition: nothing fails fast, only
the publish-confirm timeout bounds the wait). Either way a POST answers 503 with Retry-After
within the publish timeout plus a margin, the gateway's other answers stay prompt, and once
the broker is back the gateway accepts again by itself."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.conftest import MakeProxy
from tests.faults.probes import SHARED, FinalWrites, submit, wait_final
from tests.stack import Stack, wait_until

PUBLISH_TIMEOUT_S = 1.0
BOUND_S = PUBLISH_TIMEOUT_S + 2.0


def timed(call: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()  # type: ignore[operator]
    return response, time.monotonic() - started


@pytest.mark.parametrize("fault", ["block", "freeze"], ids=["refused", "partitioned"])
def test_broker_down_answers_503_in_bounded_time(
    stack: Stack, make_proxy: MakeProxy, fault: str
) -> None:
    broker = make_proxy(SHARED.amqp_url)
    stack.env["INFERQ_AMQP_URL"] = broker.url(SHARED.amqp_url)
    stack.env["INFERQ_PUBLISH_TIMEOUT_S"] = str(PUBLISH_TIMEOUT_S)
    stack.start_gateway()
    stack.start_worker("sleep", INFERQ_AMQP_URL=SHARED.amqp_url)  # the worker is not cut off
    stack.wait_live("sleep")

    with httpx.Client(base_url=stack.url, timeout=30) as client:
        before = submit(client, "sleep", {"ms": 1})
        getattr(broker, fault)()

        for _ in range(3):
            response, seconds = timed(lambda: client.post("/predict/sleep", json={"ms": 1}))
            assert response.status_code == 503, response.text
            assert response.json()["error"]["type"] == "BrokerUnavailable"
            assert int(response.headers["Retry-After"]) >= 1
            assert seconds < BOUND_S, seconds
        # The rest of the gateway does not wait on the broker.
        for path in ("/healthz", f"/tasks/{before}"):
            response, seconds = timed(lambda p=path: client.get(p))
            assert response.status_code == 200 and seconds < 1, (path, seconds)
        response, seconds = timed(lambda: client.get("/readyz"))
        assert seconds < BOUND_S, seconds
        if fault == "block":  # a partition is only noticed by the AMQP heartbeat, later
            assert response.status_code == 503 and response.json()["checks"]["broker"] is False

        broker.restore()

        def accepts() -> bool:
            response, seconds = timed(lambda: client.post("/predict/sleep", json={"ms": 1}))
            assert seconds < BOUND_S, seconds
            return response.status_code == 202

        wait_until(accepts, 30, "the gateway to accept tasks again")
        after = submit(client, "sleep", {"ms": 1})
        views = wait_final(client, [before, after], timeout=20)
        assert all(v["status"] == "succeeded" for v in views.values())


def test_a_task_answered_503_is_never_run(stack: Stack, make_proxy: MakeProxy) -> None:
    """A 503 tells the client its task was not accepted, so it will send it again: the first
    copy must not run as well. In a partition the publish may still reach the broker after
    the gateway gave up on its confirm (here: when the proxy lets the held bytes through)."""
    broker = make_proxy(SHARED.amqp_url)
    stack.env["INFERQ_AMQP_URL"] = broker.url(SHARED.amqp_url)
    stack.env["INFERQ_PUBLISH_TIMEOUT_S"] = str(PUBLISH_TIMEOUT_S)
    stack.start_gateway()
    stack.start_worker("sleep", INFERQ_AMQP_URL=SHARED.amqp_url)
    stack.wait_live("sleep")

    with FinalWrites(stack.namespace) as writes, httpx.Client(base_url=stack.url) as client:
        accepted = [submit(client, "sleep", {"ms": 1})]
        broker.freeze()
        refused = [client.post("/predict/sleep", json={"ms": 2}) for _ in range(3)]
        assert all(r.status_code == 503 for r in refused)
        broker.restore()

        def accepts() -> bool:
            response = client.post("/predict/sleep", json={"ms": 3})
            if response.status_code == 202:
                accepted.append(response.json()["task_id"])
            return response.status_code == 202

        wait_until(accepts, 30, "the gateway to accept tasks again")
        # One worker, one queue, in order: once the last accepted task is final, any refused
        # one that reached the queue before it has run too.
        wait_final(client, accepted, timeout=20)
    ran = set(writes.counts)
    assert ran == set(accepted), f"{len(ran - set(accepted))} task(s) answered 503 ran"
