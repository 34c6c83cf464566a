"""Redis with Sentinel (``INFERQ_REDIS_URL=redis+sentinel://...``): the clients follow a
failover without being rebuilt, the gateway's task-done subscription included; and
``INFERQ_REDIS_MIN_REPLICAS_ACK``: a worker acks a task only once a replica has its final
state. Each test runs its own primary, replica and sentinel (the machine's Redis is shared)."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
import pytest
import redis
from redis.exceptions import RedisError

from api_service.core.waiter import TaskWaiter
from inferq.names import Names
from inferq.redis_client import connect_redis
from inferq.tasks.outcomes import Outcome
from inferq.tasks.state import TaskStatus
from inferq.tasks.store import NotReplicated, TaskStore
from load_testing.cluster import replication_info
from load_testing.processes import free_port
from tests.faults.conftest import server_missing
from tests.faults.probes import SHARED, FinalWrites, submit, view, wait_final
from tests.faults.servers import REDIS_SERVER_ENV, find_redis_server
from tests.stack import Stack, wait_until

MASTER = "inferq-test"
FAILOVER_S = 30  # the longest a failover may take here (it takes about 2 s)
T = TypeVar("T")


class SentinelSet:
    """A primary, a replica of it and one sentinel watching them (down after 1 s), on free
    ports, data and logs under ``workdir``."""

    def __init__(self, workdir: Path, program: Path) -> None:
        self.workdir, self.program = workdir, program
        ports: set[int] = set()
        while len(ports) < 4:  # free_port may hand out a port twice
            ports.add(free_port())
        # closed: a sentinel that is down, which the clients skip
        self.primary, self.replica, self.sentinel, closed = sorted(ports)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.url = f"redis+sentinel://127.0.0.1:{closed},127.0.0.1:{self.sentinel}/{MASTER}/0"

    def start(self) -> None:
        self._server(self.primary, "--repl-diskless-sync-delay", "0")
        self._server(self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        wait_until(lambda: self.info(self.replica).get("master_link_status") == "up", 20, "sync")
        conf = self.workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel}\nbind 127.0.0.1\nprotected-mode no\ndir {self.workdir}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
        )
        self._spawn(self.sentinel, str(conf), "--sentinel")
        wait_until(lambda: self._sentinel_sees_replica(), 20, "the sentinel to see the replica")
        # Just after its sync a replica acknowledges nothing for up to a second (its first
        # REPLCONF ACK puts it online): the tests start once it does.
        wait_until(self._replica_acknowledges, 20, "the replica to acknowledge writes")

    def _replica_acknowledges(self) -> bool:
        with redis.Redis(port=self.primary, socket_timeout=2) as client:
            client.set("inferq-test-replicated", 1)
            return int(client.wait(1, 100)) == 1

    def _server(self, port: int, *args: str) -> None:
        data = self.workdir / str(port)
        data.mkdir()
        self._spawn(port, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                    "--save", "", "--appendonly", "no", *args)  # fmt: skip
        wait_until(lambda: bool(self.info(port)), 10, f"redis-server on :{port}")

    def _spawn(self, port: int, *args: str) -> None:
        with open(self.workdir / f"{port}.log", "wb") as log:
            self.processes[port] = subprocess.Popen(
                [str(self.program), *args], stdout=log, stderr=subprocess.STDOUT
            )

    def info(self, port: int) -> dict[str, Any]:
        return replication_info(port, timeout_s=1)

    def _sentinel_sees_replica(self) -> bool:
        try:
            with redis.Redis(port=self.sentinel, socket_timeout=1, decode_responses=True) as c:
                return int(c.sentinel_master(MASTER)["num-slaves"]) == 1
        except redis.RedisError:
            return False

    def master_port(self) -> int | None:
        try:
            with redis.Redis(port=self.sentinel, socket_timeout=1, decode_responses=True) as c:
                address = c.sentinel_get_master_addr_by_name(MASTER)
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def kill_primary(self) -> None:
        self.processes[self.primary].send_signal(signal.SIGKILL)
        self.processes[self.primary].wait()

    def promoted(self) -> bool:
        return self.master_port() == self.replica and self.info(self.replica)["role"] == "master"

    def signal_replica(self, sig: signal.Signals) -> None:
        """SIGSTOP: the replica stops acknowledging (a replica down or far behind); SIGCONT."""
        self.processes[self.replica].send_signal(sig)

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGCONT)  # a stopped process does not die of SIGTERM
            process.kill()
            process.wait()


@pytest.fixture
def sentinels(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SentinelSet]:
    program = find_redis_server()
    if program is None:
        server_missing(request, "redis", REDIS_SERVER_ENV, "Redis failover with Sentinel")
    servers = SentinelSet(tmp_path, program)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


async def until_it_works(call: Callable[[], Awaitable[T]], within_s: float = FAILOVER_S) -> T:
    """``call()`` retried while it raises a Redis error, for ``within_s`` at most."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await call()
        except RedisError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def succeeded(task_id: str) -> dict[str, Outcome]:
    return {task_id: Outcome(TaskStatus.SUCCEEDED, result=b"")}


async def test_the_client_follows_a_failover(sentinels: SentinelSet) -> None:
    client = connect_redis(sentinels.url)
    try:
        await client.set("before", "1")
        assert await client.wait(1, 5000) == 1  # on the replica too
        assert client.connection_pool.master_address[1] == sentinels.primary  # type: ignore[attr-defined]
        sentinels.kill_primary()
        started = time.monotonic()
        await until_it_works(lambda: client.set("after", "2"))
        took = time.monotonic() - started
        assert await client.get("before") == b"1" and await client.get("after") == b"2"
        assert client.connection_pool.master_address[1] == sentinels.replica  # type: ignore[attr-defined]
        assert sentinels.promoted()
        assert took < FAILOVER_S
    finally:
        await client.aclose()


async def test_the_task_done_subscription_moves_to_the_new_master(
    sentinels: SentinelSet,
) -> None:
    client = connect_redis(sentinels.url)
    names = Names(f"test-{os.urandom(4).hex()}")
    store = TaskStore(client, names, 60)
    waiter = TaskWaiter(client, names.task_done_channel, store, 60)
    waiter.start()
    try:
        # Only a task-done message fills `finished` (a read of the hash does not).
        async def finish_until_heard(prefix: str) -> None:
            """New tasks finished until the subscriber hears one (it subscribes in the
            background, and again after the failover)."""
            deadline = time.monotonic() + FAILOVER_S
            for n in range(1_000_000):
                task_id = f"{prefix}-{n}"
                await until_it_works(functools.partial(store.finish, succeeded(task_id), "w"))
                await asyncio.sleep(0.2)
                if waiter.finished(task_id) is not None:
                    return
                assert time.monotonic() < deadline, f"no {prefix} task heard"

        await finish_until_heard("before")
        sentinels.kill_primary()
        await finish_until_heard("after")  # published on the new master
        assert sentinels.promoted()
    finally:
        await waiter.close()
        await client.aclose()


async def test_a_final_write_waits_for_a_replica(sentinels: SentinelSet) -> None:
    client = connect_redis(sentinels.url)
    names = Names(f"test-{os.urandom(4).hex()}")
    store = TaskStore(client, names, 60, 1, 300)
    try:
        assert await store.finish(succeeded("one"), "w") == [True]
        assert await store.finish(succeeded("one"), "w") == [False]  # written once
        sentinels.signal_replica(signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(NotReplicated, match="0 of 1 replica"):
            await store.finish(succeeded("two"), "w")
        assert time.monotonic() - started >= 0.3
        state = await store.get("two")
        assert state is not None and state.status is TaskStatus.SUCCEEDED  # on the primary
        with pytest.raises(NotReplicated):  # a second write changes nothing, still waits
            await store.finish(succeeded("two"), "w")
        with pytest.raises(NotReplicated):
            await store.wait_replicated()
        sentinels.signal_replica(signal.SIGCONT)
        assert await until_it_works(lambda: store.finish(succeeded("two"), "w"), 10) == [False]
        with redis.Redis(port=sentinels.replica) as replica:
            assert replica.hget(names.task("two"), "status") == b"succeeded"
    finally:
        sentinels.signal_replica(signal.SIGCONT)
        await client.aclose()


def queued(namespace: str) -> int:
    """Messages ready in the sleep queue (not those a consumer holds unacked)."""

    async def count() -> int:
        connection = await aio_pika.connect(SHARED.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(Names(namespace).model_queue("sleep"), passive=True)
            return int(queue.declaration_result.message_count or 0)

    return asyncio.run(count())


async def delete_queue(name: str) -> None:
    connection = await aio_pika.connect(SHARED.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


@pytest.fixture
def sentinel_stack(sentinels: SentinelSet, stack: Stack) -> Iterator[Stack]:
    """`stack` on the private Redis set; its model queue, on the shared broker, is removed
    after."""
    stack.env["INFERQ_REDIS_URL"] = sentinels.url
    try:
        yield stack
    finally:
        sentinels.signal_replica(signal.SIGCONT)
        stack.stop()
        asyncio.run(delete_queue(Names(stack.namespace).model_queue("sleep")))


def predicts(client: httpx.Client) -> bool:
    """A task accepted and succeeded (a 503 while Redis fails over: not yet); never a hang."""
    started = time.monotonic()
    response = client.post("/predict/sleep", json={"ms": 1}, params={"wait": 10})
    assert time.monotonic() - started < 15, "a request hung"
    return response.status_code == 200 and response.json()["status"] == "succeeded"


def test_processes_follow_a_failover(sentinels: SentinelSet, sentinel_stack: Stack) -> None:
    stack = sentinel_stack
    stack.start_gateway()
    stack.start_worker("sleep")
    stack.wait_live("sleep")
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        assert predicts(client)
        sentinels.kill_primary()
        wait_until(lambda: predicts(client), FAILOVER_S, "a prediction after the failover")
        assert sentinels.promoted()
        task_ids = [submit(client, "sleep", {"ms": 5}) for _ in range(5)]
        views = wait_final(client, task_ids, timeout=30)
    assert all(v["status"] == "succeeded" for v in views.values()), stack.logs()
    assert all(process.poll() is None for process in stack.processes)  # not restarted


NOT_REPLICATED_LOG = "result not replicated"  # workers/processing.py, each write again


def test_a_worker_acks_only_once_a_replica_has_the_result(
    sentinels: SentinelSet, sentinel_stack: Stack
) -> None:
    stack = sentinel_stack
    stack.env["INFERQ_REDIS_MIN_REPLICAS_ACK"] = "1"
    stack.env["INFERQ_REDIS_REPLICA_TIMEOUT_MS"] = "300"
    primary = f"redis://127.0.0.1:{sentinels.primary}/0"
    stack.start_gateway()
    worker = stack.start_worker("sleep")
    stack.wait_live("sleep")
    with (
        FinalWrites(stack.namespace, primary) as writes,
        httpx.Client(base_url=stack.url, timeout=30) as client,
    ):
        first = submit(client, "sleep", {"ms": 1})
        assert wait_final(client, [first], 20)[first]["status"] == "succeeded"
        sentinels.signal_replica(signal.SIGSTOP)
        held = submit(client, "sleep", {"ms": 1})
        wait_until(lambda: NOT_REPLICATED_LOG in stack.logs(), 15, "a write not replicated")
        # The primary has the result; the worker holds the message, unacked.
        assert view(client, held)["status"] == "succeeded"
        assert queued(stack.namespace) == 0
        worker.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
        # Not acked: the broker gives it back.
        wait_until(lambda: queued(stack.namespace) == 1, 10, "the task back in the queue")
        sentinels.signal_replica(signal.SIGCONT)
        second = stack.start_worker("sleep")
        wait_until(lambda: queued(stack.namespace) == 0, 20, "the task taken again")
        second.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
        second.wait(30)  # type: ignore[attr-defined]
        assert queued(stack.namespace) == 0  # acked: a stop requeues what it holds
        task = view(client, held)
    assert task["status"] == "succeeded" and task["attempts"] == 1  # not run again
    assert writes.counts[held] == 1, writes.counts  # stored once
