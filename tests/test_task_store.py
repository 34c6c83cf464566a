"""The task store and the registry against the real Redis, in a namespace of their own."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from inferq.names import Names
from inferq.redis_client import connect_redis
from inferq.tasks import Outcome, TaskStatus, TaskStore, new_task_id, now_ms
from model_registry.record import ModelRecord, WorkerHeartbeat
from model_registry.registry import Registry


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, Names]]:
    names = Names(f"test-{os.urandom(4).hex()}")
    client = connect_redis("redis://127.0.0.1:6379/0")
    yield client, names
    keys = [k async for k in client.scan_iter(match=names.key_pattern)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_a_final_state_is_written_once(redis: tuple[Redis, Names]) -> None:
    client, names = redis
    store = TaskStore(client, names, ttl_s=60)
    task_id = new_task_id()
    await store.create(task_id, "m", now_ms(), 0)
    assert (await store.get(task_id)).status is TaskStatus.QUEUED  # type: ignore[union-attr]

    assert await store.mark_running([task_id], "w1") == [TaskStatus.QUEUED]
    first = Outcome(TaskStatus.SUCCEEDED, result=b"first")
    assert await store.finish({task_id: first}, "w1") == [True]
    # A redelivered copy finishing later changes nothing, and is told the task is final.
    assert await store.mark_running([task_id], "w2") == [TaskStatus.SUCCEEDED]
    assert await store.finish({task_id: Outcome(TaskStatus.SUCCEEDED, result=b"second")}, "w2") == [
        False
    ]

    state = await store.get(task_id)
    assert state is not None
    assert (state.status, state.result, state.worker_id, state.attempts) == (
        TaskStatus.SUCCEEDED,
        b"first",
        "w1",
        1,
    )
    assert 0 < await client.ttl(names.task(task_id)) <= 60


async def test_finishing_announces_the_task(redis: tuple[Redis, Names]) -> None:
    client, names = redis
    store = TaskStore(client, names, ttl_s=60)
    task_id = new_task_id()
    await store.create(task_id, "m", now_ms(), 0)
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(names.task_done_channel)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        await store.finish(
            {task_id: Outcome(TaskStatus.FAILED, error_type="E", error_message="m")}, "w"
        )
        message = await pubsub.get_message(timeout=2)
    assert message is not None and message["data"] == task_id.encode()


async def test_a_worker_that_stops_beating_drops_out(redis: tuple[Redis, Names]) -> None:
    client, names = redis
    registry = Registry(client, names, heartbeat_ttl_s=0.3, model_record_ttl_s=60)
    record = ModelRecord("m", "1", "q", "a.Req", "a.Resp", b"", 10)
    beat = WorkerHeartbeat("w1", "m", "1", "host", 1, now_ms())
    await registry.register(record, beat)
    assert await registry.model_names() == ["m"]
    assert [w.worker_id for w in await registry.live_workers("m")] == ["w1"]
    await asyncio.sleep(0.5)
    assert await registry.live_workers("m") == []
    assert await registry.get("m") == record  # known, just not live
    await registry.register(record, beat)
    await registry.deregister("m", "w1")
    assert await registry.live_workers("m") == []
