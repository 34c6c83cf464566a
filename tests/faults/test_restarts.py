"""Contract 5: workers and gateway reconnect after a Redis or broker restart, without being
restarted themselves. Each test runs its own Redis or RabbitMQ node (the machine's are
shared), stops it under load, starts it again, and checks that every accepted task ends
succeeded, stored once, and that the same processes serve new tasks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aio_pika
import httpx
import pytest

from inferq.names import Names
from tests.faults.probes import SHARED, FinalWrites, running, submit, wait_final
from tests.faults.servers import RabbitNode, RedisServer
from tests.stack import Stack, wait_until

BOUND_S = 5.0  # no request may take longer while a server is down


def timed_post(client: httpx.Client) -> tuple[int, float]:
    started = time.monotonic()
    status = client.post("/predict/sleep", json={"ms": 1}).status_code
    return status, time.monotonic() - started


def accepts(client: httpx.Client) -> bool:
    status, seconds = timed_post(client)
    assert seconds < BOUND_S, seconds
    return status == 202


def all_alive(stack: Stack) -> bool:
    return all(process.poll() is None for process in stack.processes)


@pytest.fixture
def redis_stack(private_redis: RedisServer, stack: Stack) -> Iterator[Stack]:
    """`stack` on the private Redis; its model queue, on the shared broker, is removed after."""
    stack.env["INFERQ_REDIS_URL"] = private_redis.url
    yield stack
    stack.stop()
    asyncio.run(delete_queue(Names(stack.namespace).model_queue("sleep")))


async def delete_queue(name: str) -> None:
    connection = await aio_pika.connect(SHARED.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


def test_redis_restart(private_redis: RedisServer, redis_stack: Stack) -> None:
    stack = redis_stack
    stack.start_gateway()
    stack.start_worker("sleep")
    stack.wait_live("sleep")
    with (
        FinalWrites(stack.namespace, private_redis.url, survives_restarts=True) as writes,
        httpx.Client(base_url=stack.url, timeout=30) as client,
    ):
        ids = [submit(client, "sleep", {"ms": 300}) for _ in range(6)]
        wait_until(
            lambda: running(stack.namespace, ids, redis_url=private_redis.url), 10, "a task running"
        )
        private_redis.stop(keep_data=True)
        # Down: the gateway says so, promptly.
        status, seconds = timed_post(client)
        assert status == 503 and seconds < BOUND_S, (status, seconds)
        response = client.get(f"/tasks/{ids[0]}")
        assert response.status_code == 503, response.text
        assert client.get("/healthz").status_code == 200
        private_redis.start()

        wait_until(lambda: accepts(client), 30, "the gateway to accept tasks again")
        ids += [submit(client, "sleep", {"ms": 10}) for _ in range(3)]
        views = wait_final(client, ids, timeout=30)
        assert all(v["status"] == "succeeded" for v in views.values()), stack.logs()
        assert all_alive(stack)  # recovered by themselves, not restarted
        assert writes.more_than_once() == {}


def test_redis_restart_with_its_data_lost(private_redis: RedisServer, redis_stack: Stack) -> None:
    stack = redis_stack
    stack.start_gateway()
    stack.start_worker("sleep")
    stack.wait_live("sleep")
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        assert accepts(client)
        private_redis.stop(keep_data=False)
        private_redis.start()
        wait_until(lambda: accepts(client), 5, "the gateway to accept tasks again")
        assert all_alive(stack)
        task = submit(client, "sleep", {"ms": 1})
        assert wait_final(client, [task], timeout=20)[task]["status"] == "succeeded"


def test_broker_restart(private_rabbit: RabbitNode, stack: Stack) -> None:
    stack.env["INFERQ_AMQP_URL"] = private_rabbit.url
    stack.env["INFERQ_PUBLISH_TIMEOUT_S"] = "2"
    stack.start_gateway()
    stack.start_worker("sleep")
    stack.start_worker("sleep")
    stack.wait_live("sleep", 2)
    with FinalWrites(stack.namespace) as writes, httpx.Client(base_url=stack.url) as client:
        ids = [submit(client, "sleep", {"ms": 300}) for _ in range(12)]
        wait_until(lambda: running(stack.namespace, ids), 10, "a task running")
        private_rabbit.stop_app()
        status, seconds = timed_post(client)
        assert status == 503 and seconds < BOUND_S, (status, seconds)
        assert client.get("/readyz").status_code == 503
        private_rabbit.start_app()

        wait_until(lambda: accepts(client), 30, "the gateway to accept tasks again")
        ids += [submit(client, "sleep", {"ms": 10}) for _ in range(6)]
        views = wait_final(client, ids, timeout=60)
        assert all(v["status"] == "succeeded" for v in views.values()), stack.logs()
        assert all_alive(stack)
        # Both workers consume again (a worker that lost its consumer would sit idle).
        wait_until(lambda: client.get("/models/sleep").json()["consumers"] == 2, 20, "2 consumers")
        assert writes.more_than_once() == {}
