"""The outcomes a task can end with, as a client reads them in the task view's ``error``."""

from inferq.errors import InvalidRequest
from inferq.tasks.outcomes import (
    DEADLINE_EXCEEDED,
    dead_lettered,
    delivery_limit_exceeded,
    failure,
    model_failure,
)
from inferq.tasks.state import TaskStatus


class PixelsOutOfRange(Exception):
    pass


def test_each_outcome_keeps_the_type_clients_see() -> None:
    ends = {
        "deadline": DEADLINE_EXCEEDED,
        "crashed": delivery_limit_exceeded(3),
        "dead-lettered": dead_lettered("maxlen"),
        "undecodable": failure(InvalidRequest("truncated message")),
        "model raised": model_failure(PixelsOutOfRange("pixel 3 is 17")),
    }
    seen = {name: (o.status, o.error_type, o.error_message) for name, o in ends.items()}
    assert seen == {
        "deadline": (
            TaskStatus.EXPIRED,
            "DeadlineExceeded",
            "the task's deadline passed before a worker could run it",
        ),
        "crashed": (
            TaskStatus.FAILED,
            "DeliveryLimitExceeded",
            "the task was started 3 times and its worker died each time; its input may be "
            "crashing the worker",
        ),
        "dead-lettered": (TaskStatus.FAILED, "Rejected", "dead-lettered: maxlen"),
        "undecodable": (TaskStatus.FAILED, "InvalidRequest", "truncated message"),
        "model raised": (TaskStatus.FAILED, "PixelsOutOfRange", "pixel 3 is 17"),
    }
