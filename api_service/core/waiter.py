"""Long-polling without polling: a request waiting on a task is answered by the task-done
pub/sub message, which carries the task's final state (see `inferq.tasks`), and a poll for a
task that finished moments ago by the state that message brought. The task hash stays the
source of truth; a missed message (say, during a Redis reconnect) costs at most one re-read
interval."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Iterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api_service.core.records import RECORD_AFTER_S
from inferq.tasks.state import TaskState
from inferq.tasks.store import TaskStore, read_notice
from proto.task_pb2 import TaskEnvelope

logger = logging.getLogger(__name__)

REREAD_S = 1.0
# Final states seen in task-done messages, kept briefly: a final state never changes, so a
# poll for a task that just finished needs no read (POST, then GET ?wait=, is how clients poll).
FINISHED_KEPT = 10_000
FINISHED_KEPT_S = 30.0


class TaskWaiter:
    def __init__(self, redis: Redis, channel: str, store: TaskStore, result_ttl_s: float) -> None:
        self._redis = redis
        # Never longer than Redis keeps the task.
        self._kept_s = min(FINISHED_KEPT_S, result_ttl_s)
        self._channel = channel
        self._store = store
        # One future per waiting request, answered with the task's final state.
        self._waiting: dict[str, list[asyncio.Future[TaskState]]] = {}
        self._finished: collections.OrderedDict[str, tuple[float, TaskState]] = (
            collections.OrderedDict()
        )
        self._listener: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="task-done-listener")

    async def close(self) -> None:
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    @contextlib.contextmanager
    def watching(self, task_id: str) -> Iterator[asyncio.Future[TaskState]]:
        """A future the task's final state is set on, from now until the block ends. Enter
        it before the task can finish (before publishing it) and no message is missed."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(task_id, []).append(future)
        try:
            yield future
        finally:
            futures = self._waiting.get(task_id)
            if futures is not None:
                with contextlib.suppress(ValueError):
                    futures.remove(future)
                if not futures:
                    del self._waiting[task_id]

    def finished(self, task_id: str) -> TaskState | None:
        """The task's final state if a task-done message brought it lately, else None."""
        kept = self._finished.get(task_id)
        if kept is None or time.monotonic() - kept[0] > self._kept_s:
            return None
        return kept[1]

    async def wait(self, task_id: str, timeout_s: float) -> TaskState | None:
        """The task once it is final or ``timeout_s`` passed, whichever is first."""
        if (state := self.finished(task_id)) is not None:
            return state
        with self.watching(task_id) as future:
            return await self.wait_watched(task_id, future, timeout_s)

    async def wait_watched(
        self,
        task_id: str,
        future: asyncio.Future[TaskState],
        timeout_s: float,
        pending: bool = False,
        unrecorded: TaskEnvelope | None = None,
    ) -> TaskState | None:
        """As `wait`, for a task watched since before it could finish. ``pending``: the
        caller knows it is not final (it just submitted it), which saves a read; then None
        can also mean "still pending when ``timeout_s`` passed". ``unrecorded`` (with
        ``pending``): the task, if its queued record was left to this call; it is created
        as `api_service.core.records` says (rule 3), so a task still pending when this
        returns has its record."""
        deadline = time.monotonic() + timeout_s
        state = None
        while True:
            if not pending:
                state = await self._store.get(task_id)
                if state is None or state.status.is_final:
                    return state
            if future.done():
                return future.result()
            remaining = deadline - time.monotonic()
            if remaining > 0:
                interval = REREAD_S if unrecorded is None else RECORD_AFTER_S
                await asyncio.wait((future,), timeout=min(remaining, interval))
                if future.done():
                    return future.result()
            if unrecorded is not None:
                await self._store.create([unrecorded])  # never overwrites a final state
                unrecorded = None
            elif remaining <= 0:
                return state
            pending = False  # no message yet: read the hash again, it may have been missed

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._answer(message["data"])
            except (RedisError, OSError) as error:
                logger.warning("task-done subscription lost, resubscribing: %s", error)
                await asyncio.sleep(0.5)

    def _answer(self, data: bytes) -> None:
        try:
            states = read_notice(data)
        except (ValueError, TypeError) as error:  # msgpack's errors are ValueErrors
            logger.warning("ignoring a task-done message that does not parse: %s", error)
            return
        now = time.monotonic()
        finished = self._finished
        for state in states:
            finished[state.task_id] = (now, state)
            for future in self._waiting.get(state.task_id, ()):
                if not future.done():
                    future.set_result(state)
        while finished and (
            len(finished) > FINISHED_KEPT or now - next(iter(finished.values()))[0] > self._kept_s
        ):
            finished.popitem(last=False)
