"""The one error hierarchy: each error knows its HTTP status and crosses the wire as type and
message, never pickled."""

from __future__ import annotations

from typing import Any


class InferqError(Exception):
    """Base of every error inferq reports to a client."""

    status_code = 500
    error_type = "InternalError"

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
    """The body does not match the model's request message."""

    status_code = 422
    error_type = "InvalidRequest"


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
