"""The outcome policy: the final state a worker (or the dead-letter consumer) writes for a
task. A task ends with its model's response, with the error its model raised (under the
error's own class name), or with one of inferq's errors (`inferq.errors`): its request does
not decode, it crashed its worker at each start, it reached its deadline first, the broker
dead-lettered it."""

from __future__ import annotations

from dataclasses import dataclass

from inferq.errors import DeadLettered, DeadlineExceeded, DeliveryLimitExceeded, InferqError
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
        """This outcome of a task that started at ``at_ms`` unmarked (by hand, not
        `dataclasses.replace`: this runs once per task)."""
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


def failure(error: InferqError) -> Outcome:
    """What a task that ``error`` ended ends with."""
    return Outcome(error.task_status, error_type=error.error_type, error_message=error.message)


def model_failure(error: Exception) -> Outcome:
    """What a task whose model raised ``error`` ends with: the error under its own class name,
    as the model's author named it."""
    return Outcome(TaskStatus.FAILED, error_type=type(error).__name__, error_message=str(error))


def delivery_limit_exceeded(attempts: int) -> Outcome:
    """What a task that crashed its worker at each of its ``attempts`` starts ends with."""
    return failure(
        DeliveryLimitExceeded(
            f"the task was started {attempts} times and its worker died each "
            "time; its input may be crashing the worker"
        )
    )


def dead_lettered(reason: str) -> Outcome:
    """What a task the broker dead-lettered for ``reason`` (``x-first-death-reason``, other
    than ``expired`` and ``delivery_limit``) ends with."""
    return failure(DeadLettered(f"dead-lettered: {reason}"))


#: What a task that reached its deadline before running ends with (worker, dead letters, view).
DEADLINE_EXCEEDED = failure(
    DeadlineExceeded("the task's deadline passed before a worker could run it")
)
