"""What the client hands back: a task as the gateway's task view describes it, and one answer
of a stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inferq.errors import InferqError, error_from_json
from inferq.tasks.state import TaskStatus


class TaskFailed(InferqError):
    """A task that ended without a result (``failed`` or ``expired``); ``error_type`` and
    ``message`` are the task's own error (a model's exception keeps its class name)."""

    def __init__(self, task: Task) -> None:
        error = task.error or {}
        super().__init__(
            str(error.get("message", "")), task_id=task.task_id, status=task.status.value
        )
        self.error_type = str(error.get("type", "InternalError"))
        self.task = task


@dataclass(frozen=True)
class Task:
    """One task, read from the gateway's JSON view of it (``view``: all of it)."""

    task_id: str
    model: str
    status: TaskStatus
    result: Any = None  # the model's response message as JSON, once succeeded
    error: dict[str, Any] | None = None  # {"type", "message"}, once failed or expired
    view: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> Task:
        return cls(
            task_id=view["task_id"],
            model=view["model"],
            status=TaskStatus(view["status"]),
            result=view.get("result"),
            error=view.get("error"),
            view=view,
        )

    @property
    def finished(self) -> bool:
        return self.status.is_final

    @property
    def succeeded(self) -> bool:
        return self.status is TaskStatus.SUCCEEDED

    def output(self) -> Any:
        """The result of a task that succeeded; `TaskFailed` for one that failed or expired,
        `TimeoutError` for one still pending."""
        if self.succeeded:
            return self.result
        if not self.finished:
            raise TimeoutError(f"task {self.task_id} is still {self.status.value}")
        raise TaskFailed(self)


@dataclass(frozen=True)
class StreamItem:
    """One answer of `Client.stream`: the input at ``index`` either became ``task`` (ended:
    succeeded, failed or expired) or was refused with ``error``."""

    index: int
    task: Task | None = None
    error: InferqError | None = None


def answer(status: int, body: Any) -> Task:
    """The task of a 200/202 answer; the error, as its inferq class, of any other."""
    if status in (200, 202) and isinstance(body, dict) and "task_id" in body:
        return Task.from_view(body)
    raise error_from_json(status, body)


def stream_item(frame: dict[str, Any]) -> StreamItem | None:
    """The stream's answer in a WebSocket frame; None for an ``accepted`` frame."""
    index = frame.get("id")
    position = index if isinstance(index, int) else -1  # -1: a frame the gateway could not read
    if frame.get("type") == "result":
        return StreamItem(position, task=Task.from_view(frame["task"]))
    if frame.get("type") == "error":
        return StreamItem(position, error=error_from_json(500, frame))
    return None
