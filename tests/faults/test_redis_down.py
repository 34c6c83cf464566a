"""Redis unreachable when a worker finishes a task: the worker must not ack a task whose
result it could not store. The delivery stays unacked — a worker killed now gives it back to
the queue — and once Redis is back the task ends succeeded, stored once."""

from __future__ import annotations

import asyncio
import signal

import aio_pika
import httpx

from inferq.names import Names
from tests.faults.conftest import MakeProxy
from tests.faults.probes import SHARED, FinalWrites, submit, view, wait_final
from tests.faults.proxy import TcpProxy
from tests.stack import Stack, wait_until


def queued_messages(stack: Stack) -> int:
    """Messages ready in the sleep queue (not those a consumer holds unacked)."""

    async def count() -> int:
        connection = await aio_pika.connect(SHARED.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(
                Names(stack.namespace).model_queue("sleep"), passive=True
            )
            return int(queue.declaration_result.message_count or 0)

    return asyncio.run(count())


# What the worker logs each time a Redis call fails and it retries (workers/processing.py).
RETRYING_LOG = "Redis unavailable"


def storing_failed(stack: Stack) -> bool:
    return RETRYING_LOG in stack.logs()


def start_with_redis_behind(stack: Stack, make_proxy: MakeProxy) -> tuple[TcpProxy, object]:
    redis = make_proxy(SHARED.redis_url)
    stack.start_gateway()
    worker = stack.start_worker("sleep", INFERQ_REDIS_URL=redis.url(SHARED.redis_url))
    stack.wait_live("sleep")
    return redis, worker


def test_a_result_that_cannot_be_stored_is_stored_once_redis_is_back(
    stack: Stack, make_proxy: MakeProxy
) -> None:
    redis, _ = start_with_redis_behind(stack, make_proxy)
    with FinalWrites(stack.namespace) as writes, httpx.Client(base_url=stack.url) as client:
        task_id = submit(client, "sleep", {"ms": 500})
        wait_until(lambda: view(client, task_id)["status"] == "running", 10, "task running")
        redis.block()
        # The model finished; storing its result fails, again and again.
        wait_until(lambda: storing_failed(stack), 15, "the worker failing to store the result")
        assert view(client, task_id)["status"] == "running"
        assert queued_messages(stack) == 0  # held by the worker, neither acked nor requeued
        redis.restore()
        task = wait_final(client, [task_id], timeout=20)[task_id]
    assert task["status"] == "succeeded" and task["result"] == {"slept_ms": 500}
    assert task["attempts"] == 1  # stored by the same run, once Redis answered again
    assert writes.counts[task_id] == 1
    assert queued_messages(stack) == 0  # acked now


def test_a_worker_killed_while_redis_is_down_gives_the_task_back(
    stack: Stack, make_proxy: MakeProxy
) -> None:
    redis, worker = start_with_redis_behind(stack, make_proxy)
    with httpx.Client(base_url=stack.url) as client:
        task_id = submit(client, "sleep", {"ms": 500})
        wait_until(lambda: view(client, task_id)["status"] == "running", 10, "task running")
        redis.block()
        wait_until(lambda: storing_failed(stack), 15, "the worker failing to store the result")
        worker.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
        # Had it acked the task it could not store, the task would be gone now.
        wait_until(lambda: queued_messages(stack) == 1, 10, "the task back in the queue")
        redis.restore()
        stack.start_worker("sleep")
        task = wait_final(client, [task_id], timeout=30)[task_id]
    assert task["status"] == "succeeded" and task["result"] == {"slept_ms": 500}
    assert task["attempts"] == 2
