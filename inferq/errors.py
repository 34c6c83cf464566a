"""The one error hierarchy: each error knows its HTTP status and crosses the wire as type and
message, never pickled. An error that ends a task (a worker's, the dead-letter consumer's) is
stored in the task's record as its type and message, and the task ends with the error's
``task_status``; clients read it in the task view's ``error``. An error raised by a user's
model is stored under its own class name instead (`inferq.tasks.outcomes.model_failure`)."""

from __future__ import annotations

from typing import Any

from inferq.tasks.state import TaskStatus


class InferqError(Exception):
    """Base of every error inferq reports to a client."""

    status_code = 500
    error_type = "InternalError"
    #: The status a task ends with when this error ends it.
    task_status = TaskStatus.FAILED

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers: dict[str, str] = {}

    def to_json(self) -> dict[str, Any]:
        return {"error": {"type": self.error_type, "message": self.message, **self.details}}


class ModelNotFound(InferqError):
    status_code = 404
    error_type = "ModelNotFound"


class TaskNotFound(InferqError):
    status_code = 404
    error_type = "TaskNotFound"


class InvalidRequest(InferqError):
    """The body does not match the model's request message (at the gateway), or the task's
    request does not decode as it (at the worker)."""

    status_code = 422
    error_type = "InvalidRequest"


class Forbidden(InferqError):
    """The call is not allowed here (model changes while they are disabled; later, a key
    without the scope)."""

    status_code = 403
    error_type = "Forbidden"


class Conflict(InferqError):
    """The call clashes with the current state (deleting a version that an alias names, that
    is deployed, or that has queued tasks): the message says what to change first."""

    status_code = 409
    error_type = "Conflict"


class BodyTooLarge(InferqError):
    status_code = 413
    error_type = "BodyTooLarge"


class BodyTimeout(InferqError):
    """The request body stopped arriving."""

    status_code = 408
    error_type = "RequestTimeout"


class UnsupportedMediaType(InferqError):
    status_code = 415
    error_type = "UnsupportedMediaType"


class _RetryLater(InferqError):
    """An error that tells the client when to try again."""

    def __init__(self, message: str, retry_after_s: float, **details: Any) -> None:
        super().__init__(message, **details)
        self.headers["Retry-After"] = str(max(1, round(retry_after_s)))


class QueueFull(_RetryLater):
    status_code = 429
    error_type = "QueueFull"


class ModelUnavailable(_RetryLater):
    """The model is known but has no live worker."""

    status_code = 503
    error_type = "ModelUnavailable"


class BrokerUnavailable(_RetryLater):
    status_code = 503
    error_type = "BrokerUnavailable"


class StoreUnavailable(_RetryLater):
    status_code = 503
    error_type = "StoreUnavailable"


class CatalogUnavailable(_RetryLater):
    """The catalog's database cannot be reached."""

    status_code = 503
    error_type = "CatalogUnavailable"


class DeadlineExceeded(InferqError):
    """The task's deadline passed before a worker could run it."""

    status_code = 504
    error_type = "DeadlineExceeded"
    task_status = TaskStatus.EXPIRED


class DeliveryLimitExceeded(InferqError):
    """The task was started ``INFERQ_DELIVERY_LIMIT`` times and its worker died each time."""

    status_code = 500
    error_type = "DeliveryLimitExceeded"


class DeadLettered(InferqError):
    """The broker dead-lettered the task for a reason other than its deadline or the delivery
    limit. Its type on the wire is the older name, ``Rejected``."""

    status_code = 500
    error_type = "Rejected"


class InvalidModel(InferqError):
    """An uploaded model file that is refused before anything is stored: the message says what
    is wrong and how to fix it; the ``reason`` detail names the check that refused it."""

    status_code = 422
    error_type = "InvalidModel"


class ModelTooLarge(InvalidModel):
    """An uploaded model file over ``INFERQ_MAX_MODEL_BYTES``."""

    status_code = 413
    error_type = "ModelTooLarge"


class ModelFileNotFound(InferqError):
    status_code = 404
    error_type = "ModelFileNotFound"


class InvalidModelFileKey(InferqError):
    status_code = 422
    error_type = "InvalidModelFileKey"


class ModelStoreUnavailable(InferqError):
    """The store cannot be used at all: its bucket does not exist, its endpoint does not
    answer, or there are no credentials. The message names the store's URL."""

    status_code = 503
    error_type = "ModelStoreUnavailable"
