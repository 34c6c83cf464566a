"""Several broker nodes (INFERQ_AMQP_URL as a list): a process connects to one that answers,
and when its node goes, it reconnects to another, without a restart.

The nodes here are TCP proxies to the shared broker (one broker, several addresses): a proxy
blocked is a node down for the processes behind it. A RabbitMQ cluster's own part (quorum
queues surviving a node) is the failover scenario's (`load_testing.failover`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage

from inferq.amqp import NodesConnection, connect_with_retry
from tests.faults.conftest import MakeProxy
from tests.faults.probes import SHARED, submit, wait_final
from tests.faults.proxy import TcpProxy
from tests.stack import Stack, wait_until

CLOSED = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens on port 1
BOUND_S = 5.0


async def test_a_closed_first_node_is_skipped() -> None:
    started = time.monotonic()
    connection = await connect_with_retry([CLOSED, SHARED.amqp_connection_url], "test", first=0)
    try:
        assert isinstance(connection, NodesConnection)
        assert connection.url.port == 5672
        assert time.monotonic() - started < BOUND_S  # no pause before the second node
    finally:
        await connection.close()


async def test_one_url_keeps_aio_pikas_connection() -> None:
    connection = await connect_with_retry(SHARED.amqp_connection_url, "test")
    try:
        assert type(connection) is aio_pika.RobustConnection
    finally:
        await connection.close()


async def wait_for(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} in {within_s}s")
        await asyncio.sleep(0.05)


async def test_a_lost_node_is_replaced_by_another(make_proxy: MakeProxy) -> None:
    """Connected through node A; A goes down: the connection moves to B, its consumer with
    it; A back and B down: back to A (the list wraps round)."""
    a, b = make_proxy(SHARED.amqp_url), make_proxy(SHARED.amqp_url)
    urls = [p.url(SHARED.amqp_connection_url) for p in (a, b)]
    connection = await connect_with_retry(urls, "test", first=0)
    assert isinstance(connection, NodesConnection)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await message.ack()
        await received.put(message.body)

    try:
        assert connection.url.port == a.port
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.consume(on_message)
        for down, up, body in ((a, b, b"one"), (b, a, b"two")):
            down.block()
            port = up.port
            await wait_for(lambda: connection.url.port == port, 10, "moved on")  # noqa: B023
            await wait_for(lambda: connection.connected.is_set(), 10, "reconnected")
            await publish_until_received(channel, queue.name, body, received)
            if down is a:
                a.restore()
        assert a.accepted >= 2 and b.accepted >= 1
    finally:
        await connection.close()


async def publish_until_received(
    channel: aio_pika.abc.AbstractChannel,
    queue: str,
    body: bytes,
    received: asyncio.Queue[bytes],
) -> None:
    """The restored consumer gets a message published now (published again while the
    channel is still being restored: until then a publish finds it closed)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue)
            assert await asyncio.wait_for(received.get(), 2) == body
            return
        except (
            TimeoutError,
            aio_pika.exceptions.ChannelInvalidStateError,
            *aio_pika.exceptions.CONNECTION_EXCEPTIONS,
        ):
            if time.monotonic() > deadline:
                raise


def predicts(client: httpx.Client) -> bool:
    """A task is accepted and succeeds (a 503 while a process reconnects: not yet)."""
    started = time.monotonic()
    response = client.post("/predict/sleep", json={"ms": 1}, params={"wait": 10})
    assert time.monotonic() - started < 15, "a request hung"
    return response.status_code == 200 and response.json()["status"] == "succeeded"


def test_processes_skip_a_node_that_is_down(stack: Stack) -> None:
    nodes = f"{CLOSED},{SHARED.amqp_url}"
    stack.env["INFERQ_AMQP_URL"] = nodes
    stack.start_gateway()
    stack.start_worker("sleep")
    stack.wait_live("sleep")
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        wait_until(lambda: predicts(client), 20, "a prediction")
        task_ids = [submit(client, "sleep", {"ms": 5}) for _ in range(5)]
        views = wait_final(client, task_ids, timeout=30)
    assert all(v["status"] == "succeeded" for v in views.values()), stack.logs()


@pytest.mark.slow
def test_processes_move_to_a_surviving_node(stack: Stack, proxies: list[TcpProxy]) -> None:
    """The gateway and the worker each start on one of two nodes; each node in turn goes
    down: both processes keep serving, reconnected to the other, not restarted."""
    a, b = TcpProxy(5672).start(), TcpProxy(5672).start()
    proxies += [a, b]
    stack.env["INFERQ_AMQP_URL"] = f"{a.url(SHARED.amqp_url)},{b.url(SHARED.amqp_url)}"
    stack.env["INFERQ_PUBLISH_TIMEOUT_S"] = "2"
    stack.start_gateway()
    stack.start_worker("sleep")
    stack.wait_live("sleep")
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        assert predicts(client)
        a.block()
        wait_until(lambda: predicts(client), 30, "a prediction with node A down")
        a.restore()
        b.block()
        wait_until(lambda: predicts(client), 30, "a prediction with node B down")
        b.restore()
        task_ids = [submit(client, "sleep", {"ms": 5}) for _ in range(5)]
        views = wait_final(client, task_ids, timeout=30)
    assert all(v["status"] == "succeeded" for v in views.values()), stack.logs()
    assert all(process.poll() is None for process in stack.processes)
    # Both processes went through both nodes: each was on one of them when it went down.
    assert a.accepted >= 2 and b.accepted >= 2, (a.accepted, b.accepted)
