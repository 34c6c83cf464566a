"""The outcome policy: the final state a worker (or the dead-letter consumer) writes for a
task, and the two a task ends with when it never ran to the end (crashed its worker at each
start; reached its deadline first)."""

from __future__ import annotations

from dataclasses import dataclass

from inferq.tasks.state import TaskStatus


@dataclass(frozen=True)
class Outcome:
    """The final state a worker (or the dead-letter consumer) writes for a task."""

    status: TaskStatus
    result: bytes | None = None
    error_type: str | None = None
    error_message: str | None = None
    #: Set when the task ran without being marked running first (on its first delivery,
    #: see `workers.base.Model.mark_running`): when it started; it counts as one attempt.
    unmarked_start_ms: int | None = None

    def started_unmarked(self, at_ms: int) -> Outcome:
        """This outcome of a task that started at ``at_ms`` unmarked. (`dataclasses.replace`
        costs a worker ~3 µs per task.)"""
        return Outcome(self.status, self.result, self.error_type, self.error_message, at_ms)

    def fields(self, worker_id: str, finished_at_ms: int) -> list[str | bytes]:
        pairs: list[str | bytes] = [
            "status",
            self.status.value,
            "finished_at_ms",
            str(finished_at_ms),
        ]
        if self.unmarked_start_ms is not None:
            pairs += ["started_at_ms", str(self.unmarked_start_ms), "attempts", "1"]
        if worker_id:
            pairs += ["worker_id", worker_id]
        if self.result is not None:
            pairs += ["result", self.result]
        if self.error_type is not None:
            pairs += ["error_type", self.error_type, "error_message", self.error_message or ""]
        return pairs


def delivery_limit_exceeded(attempts: int) -> Outcome:
    """What a task that crashed its worker at each of its ``attempts`` starts ends with."""
    return Outcome(
        TaskStatus.FAILED,
        error_type="DeliveryLimitExceeded",
        error_message=f"the task was started {attempts} times and its worker died each "
        "time; its input may be crashing the worker",
    )


#: What a task that reached its deadline before running ends with (worker, dead letters, view).
DEADLINE_EXCEEDED = Outcome(
    TaskStatus.EXPIRED,
    error_type="DeadlineExceeded",
    error_message="the task's deadline passed before a worker could run it",
)
