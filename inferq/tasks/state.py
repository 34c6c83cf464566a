"""A task's statuses and its stored state, task ids and the clock they are stamped with."""

from __future__ import annotations

import enum
import secrets
import time
from dataclasses import dataclass
from typing import Any


class TaskStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    #: Never accepted (the publish failed, the client got a 503): must not run, reads as 404.
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


#: The statuses a task never leaves; the Lua scripts in `inferq/tasks/lua/` spell the same list.
FINAL_STATUSES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.EXPIRED, TaskStatus.REJECTED}
)
_STATUS_OF = {status.value.encode(): status for status in TaskStatus}


def new_task_id() -> str:
    """An unguessable task id (128 random bits, URL-safe)."""
    return secrets.token_hex(16)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class TaskState:
    """One task as stored; the gateway turns it into the JSON task view."""

    task_id: str
    model: str
    status: TaskStatus
    created_at_ms: int
    deadline_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    worker_id: str | None
    attempts: int
    result: bytes | None
    error_type: str | None
    error_message: str | None
    #: The id of the API key that sent the task ("": anonymous); only it may read the task.
    owner: str = ""

    @classmethod
    def from_hash(cls, task_id: str, fields: dict[Any, Any]) -> TaskState:
        """From the task hash as Redis returns it (bytes to bytes). Runs once per task the
        gateway hears finish: looked up in place, with no helper calls (half the time)."""
        get = fields.get
        status = _STATUS_OF.get(get(b"status") or b"queued")
        if status is None:
            raise ValueError(f"unknown task status {get(b'status')!r}")
        started, finished = get(b"started_at_ms"), get(b"finished_at_ms")
        worker_id, error_type = get(b"worker_id"), get(b"error_type")
        error_message = get(b"error_message")
        return cls(
            task_id=task_id,
            model=get(b"model", b"").decode(),
            status=status,
            created_at_ms=int(get(b"created_at_ms") or 0),
            deadline_ms=int(get(b"deadline_ms") or 0),
            started_at_ms=int(started) if started else None,
            finished_at_ms=int(finished) if finished else None,
            worker_id=worker_id.decode() if worker_id is not None else None,
            attempts=int(get(b"attempts") or 0),
            result=get(b"result"),
            error_type=error_type.decode() if error_type is not None else None,
            error_message=error_message.decode() if error_message is not None else None,
            owner=(get(b"owner") or b"").decode(),
        )

    def is_past_deadline(self, at_ms: int) -> bool:
        return self.deadline_ms > 0 and at_ms > self.deadline_ms
