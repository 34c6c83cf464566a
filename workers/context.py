"""What a model may know of the tasks it runs: who sent each one. The runtime sets it around
each batch; a model reads it inside `process_request` (`caller`) or `process_batch`
(`callers`, in the order of the requests):

    from workers.context import caller

    async def process_request(self, request):
        who = caller()  # TaskCaller(key_id, name), or None for an anonymous request
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskCaller:
    """The API key that sent a task: its public id and its name."""

    key_id: str
    name: str


_BATCH: contextvars.ContextVar[tuple[TaskCaller | None, ...]] = contextvars.ContextVar(
    "inferq_batch_callers", default=()
)
_UNSET = object()
_CURRENT: contextvars.ContextVar[object] = contextvars.ContextVar(
    "inferq_request_caller", default=_UNSET
)


def callers() -> tuple[TaskCaller | None, ...]:
    """The callers of the batch being run, one per request, in order (None: anonymous)."""
    return _BATCH.get()


def caller() -> TaskCaller | None:
    """The caller of the request being processed (None: anonymous, or outside a task)."""
    current = _CURRENT.get()
    if current is not _UNSET:
        return current  # type: ignore[return-value]
    batch = _BATCH.get()
    return batch[0] if len(batch) == 1 else None


@contextlib.contextmanager
def running_batch(batch: Sequence[TaskCaller | None]) -> Iterator[None]:
    """The runtime's: ``batch`` are the callers of the requests the model runs now."""
    token = _BATCH.set(tuple(batch))
    try:
        yield
    finally:
        _BATCH.reset(token)


@contextlib.contextmanager
def serving(who: TaskCaller | None) -> Iterator[None]:
    """`workers.base.Model.process_batch`'s, around each request it hands on one by one."""
    token = _CURRENT.set(who)
    try:
        yield
    finally:
        _CURRENT.reset(token)
