"""The task store and the registry against the real Redis, in a namespace of their own."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from inferq.names import Names
from inferq.redis_client import connect_redis
from inferq.tasks.outcomes import Outcome
from inferq.tasks.state import TaskStatus, new_task_id, now_ms
from inferq.tasks.store import TaskStore, read_notice
from model_registry.record import ModelRecord, WorkerHeartbeat
from model_registry.registry import Registry
from proto.task_pb2 import TaskEnvelope


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
    await store.create([TaskEnvelope(task_id=task_id, model="m", created_at_ms=now_ms())])
    assert (await store.get(task_id)).status is TaskStatus.QUEUED  # type: ignore[union-attr]

    assert await store.mark_running([TaskEnvelope(task_id=task_id, model="m")], "w1") == [
        TaskStatus.QUEUED
    ]
    first = Outcome(TaskStatus.SUCCEEDED, result=b"first")
    assert await store.finish({task_id: first}, "w1") == [True]
    # A redelivered copy finishing later changes nothing, and is told the task is final.
    assert await store.mark_running([TaskEnvelope(task_id=task_id, model="m")], "w2") == [
        TaskStatus.SUCCEEDED
    ]
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


async def test_a_running_task_can_be_left_alone(redis: tuple[Redis, Names]) -> None:
    """A worker picking up a redelivered message leaves its running tasks (suspects of the
    crash) to be marked one at a time, just before each runs alone."""
    client, names = redis
    store = TaskStore(client, names, ttl_s=60)
    running, queued = new_task_id(), new_task_id()
    await store.create([TaskEnvelope(task_id=t, model="m") for t in (running, queued)])
    envelopes = {t: TaskEnvelope(task_id=t, model="m") for t in (running, queued)}
    await store.mark_running([envelopes[running]], "w1")
    assert await store.mark_running(list(envelopes.values()), "w2", leave_running=True) == [
        TaskStatus.RUNNING,
        TaskStatus.QUEUED,
    ]
    left = await store.get(running)
    assert left is not None and (left.worker_id, left.attempts) == ("w1", 1)
    assert await store.mark_running([envelopes[running]], "w2") == [TaskStatus.RUNNING]
    taken = await store.get(running)
    assert taken is not None and (taken.worker_id, taken.attempts) == ("w2", 2)


async def test_finishing_announces_the_final_states_it_wrote(redis: tuple[Redis, Names]) -> None:
    client, names = redis
    store = TaskStore(client, names, ttl_s=60)
    done_before, failing, succeeding = new_task_id(), new_task_id(), new_task_id()
    created = now_ms()
    await store.create(
        [TaskEnvelope(task_id=t, model="m", created_at_ms=created) for t in (failing, succeeding)]
    )
    await store.finish({done_before: Outcome(TaskStatus.SUCCEEDED, result=b"")}, "w0")
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(names.task_done_channel)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        written = await store.finish(
            {
                done_before: Outcome(TaskStatus.SUCCEEDED, result=b"again"),
                failing: Outcome(TaskStatus.FAILED, error_type="E", error_message="m"),
                succeeding: Outcome(TaskStatus.SUCCEEDED, result=b"\x00\xff"),
            },
            "w1",
        )
        message = await pubsub.get_message(timeout=2)
    assert written == [False, True, True]
    assert message is not None
    # One message for the batch, with each written task's whole state, as a read finds it.
    announced = read_notice(message["data"])
    assert [state.task_id for state in announced] == [failing, succeeding]
    assert announced == [await store.get(failing), await store.get(succeeding)]
    assert (announced[0].status, announced[0].error_type, announced[0].created_at_ms) == (
        TaskStatus.FAILED,
        "E",
        created,
    )
    assert (announced[1].result, announced[1].worker_id) == (b"\x00\xff", "w1")


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


async def test_a_task_finished_before_its_record_was_created_is_announced_whole(
    redis: tuple[Redis, Names],
) -> None:
    """The gateway creates the record once the broker confirmed the message, so a quick
    worker can finish first:
    the task-done message must still carry what the gateway would have written, and the
    late create must not undo the final state."""
    client, names = redis
    store = TaskStore(client, names, ttl_s=60)
    task = TaskEnvelope(task_id=new_task_id(), model="m", created_at_ms=now_ms(), deadline_ms=9)
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(names.task_done_channel)
        await pubsub.get_message(timeout=1)
        await store.finish(
            {task.task_id: Outcome(TaskStatus.SUCCEEDED, result=b"r")}, "w", {task.task_id: task}
        )
        message = await pubsub.get_message(timeout=2)
    assert message is not None
    [announced] = read_notice(message["data"])
    assert (announced.model, announced.created_at_ms, announced.deadline_ms) == (
        "m",
        task.created_at_ms,
        9,
    )
    await store.create([task])  # the gateway's write, landing late
    assert await store.get(task.task_id) == announced


def test_an_unmarked_start_keeps_every_other_field_of_the_outcome() -> None:
    # started_unmarked copies the fields by hand (dataclasses.replace is slow per task): a
    # field added to Outcome and not copied there would be dropped silently.
    outcome = Outcome(TaskStatus.FAILED, b"r", "ValueError", "bad input")
    assert outcome.started_unmarked(42) == dataclasses.replace(outcome, unmarked_start_ms=42)
    assert all(getattr(outcome, f.name) is not None for f in dataclasses.fields(outcome)[:-1])
