"""Long-polling without polling: requests waiting on a task are woken by the task-done
pub/sub channel. The task hash stays the source of truth; a missed notification (say, during a
Redis reconnect) costs at most one re-read interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from inferq.tasks import TaskState, TaskStore

logger = logging.getLogger(__name__)

REREAD_S = 1.0


class TaskWaiter:
    def __init__(self, redis: Redis, channel: str, store: TaskStore) -> None:
        self._redis = redis
        self._channel = channel
        self._store = store
        self._waiting: dict[str, set[asyncio.Event]] = {}  # one event per waiting request
        self._listener: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="task-done-listener")

    async def close(self) -> None:
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def wait(self, task_id: str, timeout_s: float) -> TaskState | None:
        """The task once it is final or ``timeout_s`` passed, whichever is first."""
        deadline = time.monotonic() + timeout_s
        event = asyncio.Event()
        self._waiting.setdefault(task_id, set()).add(event)
        try:
            while True:
                event.clear()
                state = await self._store.get(task_id)
                remaining = deadline - time.monotonic()
                if state is None or state.status.is_final or remaining <= 0:
                    return state
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, REREAD_S))
        finally:
            events = self._waiting.get(task_id, set())
            events.discard(event)
            if not events:
                self._waiting.pop(task_id, None)

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            for event in self._waiting.get(message["data"].decode(), ()):
                                event.set()
            except (RedisError, OSError) as error:
                logger.warning("task-done subscription lost, resubscribing: %s", error)
                await asyncio.sleep(0.5)
