"""Packs tasks for one queue into shared messages: the tasks that arrive while a publish to
that queue awaits its confirm go out together in the next message (up to the model's batch
size), and their records are created in one Redis round trip once it is confirmed. Under
load, one broker message, one confirm and one Redis call serve many requests; a lone request
is published at once, never delayed. A task may leave its record to its request (see
`submit`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from api_service.core.broker import TaskPublisher
from inferq.tasks.store import TaskStore
from proto.task_pb2 import TaskEnvelope

logger = logging.getLogger(__name__)

_Waiting = tuple[TaskEnvelope, asyncio.Future[None], bool]  # task, its request, record it?


@dataclass
class _Lane:
    """One queue's tasks waiting for a publish, and how many publishes are under way."""

    waiting: list[_Waiting] = field(default_factory=list)
    publishing: int = 0
    max_tasks: int = 1  # per message


class PublishBatcher:
    def __init__(
        self,
        store: TaskStore,
        publisher: TaskPublisher,
        max_tasks: int,
        max_in_flight: int,
        is_finished: Callable[[str], bool] = lambda task_id: False,
    ) -> None:
        """``max_tasks`` per message; ``max_in_flight`` publishes per queue at once;
        ``is_finished(task_id)``: whether the gateway already saw the task's final state."""
        self._store = store
        self._publisher = publisher
        self._is_finished = is_finished
        self._max_tasks = max_tasks
        self._max_in_flight = max_in_flight
        self._lanes: dict[str, _Lane] = {}
        self._running: set[asyncio.Task[None]] = set()  # publishers and record creations

    async def submit(
        self,
        queue: str,
        task: TaskEnvelope,
        batch_size: int,
        record: bool = True,
        finished: asyncio.Future[Any] | None = None,
    ) -> None:
        """Publishes ``task`` and records it as queued; returns once both are done.
        ``batch_size``: the model's; a message holds no more tasks than that, so that each
        worker gets no more than it runs at once (the others get the rest). ``record=False``:
        only publish; the caller creates the record if it answers before the task ends.
        ``finished``: done once the task's final state is known, which can come before the
        broker's confirm (the worker can be quicker); a finished task was accepted, so this
        returns then, and the confirm and the record go on behind (a failure is logged).
        Raises what the store or the broker raised (a RedisError, or an InferqError for the
        broker: unavailable, queue full)."""
        future = asyncio.get_running_loop().create_future()
        lane = self._lanes.setdefault(queue, _Lane())
        lane.max_tasks = max(1, min(self._max_tasks, batch_size))
        lane.waiting.append((task, future, record))
        # One more publish only for tasks the ones under way will not take in their next
        # message: packing stays full, and one-task messages (batch size 1) go out in parallel.
        more = len(lane.waiting) > lane.publishing * lane.max_tasks
        if more and lane.publishing < self._max_in_flight:
            lane.publishing += 1
            self._spawn(self._publish_waiting(queue, lane))
        if finished is None:
            await future  # a request that goes away cancels it: then it is not published
            return
        try:
            first = await _first(future, finished)
        except asyncio.CancelledError:
            future.cancel()  # as above
            raise
        if first is future:
            future.result()
        else:
            future.add_done_callback(_log_failure)

    async def _publish_waiting(self, queue: str, lane: _Lane) -> None:
        try:
            while lane.waiting:
                batch = lane.waiting[: lane.max_tasks]
                del lane.waiting[: lane.max_tasks]
                # A request that went away before its task went out is not published.
                batch = [waiting for waiting in batch if not waiting[1].done()]
                if not batch:
                    continue
                try:
                    await self._publisher.publish(queue, [task for task, _, _ in batch])
                except Exception as error:  # noqa: BLE001 - every waiting request must learn it
                    _settle(batch, error)
                else:
                    # The next message goes out while these records are being created.
                    self._spawn(self._create_records(batch))
        finally:
            lane.publishing -= 1
            if not lane.publishing and not lane.waiting:
                self._lanes.pop(queue, None)

    async def _create_records(self, batch: list[_Waiting]) -> None:
        """The records of a confirmed message's tasks; then their requests go on.

        Why after the confirm, not beside the publish: a record created while the message is
        on its way costs Redis and gateway CPU just when the broker and the worker need it (on
        2 cores, ~0.3 ms more per prediction at one client, load_testing/README.md), and the
        confirm of a message its worker already acked often comes after the task's final
        state, which makes the record moot (the store's final write holds all it would). A
        worker may take a task before its record exists, which the store allows
        (`TaskStore.create` never overwrites what a worker wrote). Both must succeed; if only
        the publish did, the task runs although its client got an error (a retry makes it
        twice), which never loses an accepted task."""
        unfinished = [
            task for task, _, record in batch if record and not self._is_finished(task.task_id)
        ]
        try:
            if unfinished:
                await self._store.create(unfinished)
        except Exception as error:  # noqa: BLE001 - every waiting request must learn it
            _settle(batch, error)
        else:
            _settle(batch, None)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._running.add(task)  # a reference, so it is not collected mid-way
        task.add_done_callback(self._running.discard)


async def _first(*futures: asyncio.Future[Any]) -> asyncio.Future[Any]:
    """The first of ``futures`` to be done (asyncio.wait would make a task and a set for
    every waiting request)."""
    first: asyncio.Future[asyncio.Future[Any]] = asyncio.get_running_loop().create_future()

    def done(future: asyncio.Future[Any]) -> None:
        if not first.done():
            first.set_result(future)

    for future in futures:
        future.add_done_callback(done)
    try:
        return await first
    finally:
        for future in futures:
            future.remove_done_callback(done)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("a finished task's submission failed: %r", future.exception())


def _settle(batch: list[_Waiting], error: Exception | None) -> None:
    """Tells each request still waiting how its task's submission ended."""
    for _, future, _ in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
