"""The one error hierarchy: each error knows its HTTP status and crosses the wire as type and
message, never pickled. An error that ends a task (a worker's, the dead-letter consumer's) is
stored in the task's record as its type and message, and the task ends with the error's
``task_status``; clients read it in the task view's ``error``. An error raised by a user's
model is stored under its own class name instead (`inferq.tasks.outcomes.model_failure`)."""

from __future__ import annotations

from dataclasses import dataclass
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


class KeyNotFound(InferqError):
    status_code = 404
    error_type = "KeyNotFound"


class InvalidRequest(InferqError):
    """The body does not match the model's request message (at the gateway), or the task's
    request does not decode as it (at the worker)."""

    status_code = 422
    error_type = "InvalidRequest"


class Unauthenticated(InferqError):
    """No API key, or one that is malformed, unknown, revoked or wrong, where a key is
    required. Answered with ``WWW-Authenticate: Bearer`` (RFC 6750)."""

    status_code = 401
    error_type = "Unauthenticated"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.headers["WWW-Authenticate"] = 'Bearer realm="inferq"'


class Forbidden(InferqError):
    """The call is not allowed here: model changes while they are disabled, a key without the
    call's scope, or a model outside the key's list."""

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


class TooManyInFlight(InferqError):
    """A WebSocket holds as many unanswered predictions as ``INFERQ_WS_MAX_IN_FLIGHT``: the
    next waits until one is answered."""

    status_code = 429
    error_type = "TooManyInFlight"


class _RetryLater(InferqError):
    """An error that tells the client when to try again."""

    def __init__(self, message: str, retry_after_s: float, **details: Any) -> None:
        super().__init__(message, **details)
        self.headers["Retry-After"] = str(max(1, round(retry_after_s)))


class QueueFull(_RetryLater):
    status_code = 429
    error_type = "QueueFull"


class RateLimited(_RetryLater):
    """The API key is over its requests per second or minute, or holds as many unfinished
    tasks as it may (``limit`` says which)."""

    status_code = 429
    error_type = "RateLimited"


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


# The one table from the hierarchy to every front door's code. The HTTP status is the class's
# own ``status_code``; the gRPC status code is named as `grpc.StatusCode` names it (the kernel
# does not import grpc; the gRPC door looks the name up); an error that ends a WebSocket closes
# it with 4000 + its HTTP status (4403, 4413, 4422 ...; 4000-4999 are the codes RFC 6455 leaves
# to applications), and every other error on a socket is an error frame (`websocket_frame`).


@dataclass(frozen=True)
class DoorCodes:
    """How one error class reads at each front door."""

    http: int  # the HTTP status
    grpc: str  # the gRPC status code's name, as in `grpc.StatusCode`

    @property
    def websocket_close(self) -> int:
        """The close code of a WebSocket this error ends."""
        return 4000 + self.http


def _codes(*rows: tuple[type[InferqError], str]) -> dict[type[InferqError], DoorCodes]:
    return {error: DoorCodes(error.status_code, grpc) for error, grpc in rows}


ERROR_CODES: dict[type[InferqError], DoorCodes] = _codes(
    (InferqError, "INTERNAL"),
    (ModelNotFound, "NOT_FOUND"),
    (TaskNotFound, "NOT_FOUND"),
    (KeyNotFound, "NOT_FOUND"),
    (InvalidRequest, "INVALID_ARGUMENT"),
    (Unauthenticated, "UNAUTHENTICATED"),
    (Forbidden, "PERMISSION_DENIED"),
    (Conflict, "FAILED_PRECONDITION"),  # the state must change first (gRPC's own advice)
    (BodyTooLarge, "RESOURCE_EXHAUSTED"),  # what grpc answers a message over its limit
    (BodyTimeout, "DEADLINE_EXCEEDED"),
    (UnsupportedMediaType, "INVALID_ARGUMENT"),
    (TooManyInFlight, "RESOURCE_EXHAUSTED"),
    (_RetryLater, "UNAVAILABLE"),
    (QueueFull, "RESOURCE_EXHAUSTED"),
    (RateLimited, "RESOURCE_EXHAUSTED"),
    (ModelUnavailable, "UNAVAILABLE"),
    (BrokerUnavailable, "UNAVAILABLE"),
    (StoreUnavailable, "UNAVAILABLE"),
    (CatalogUnavailable, "UNAVAILABLE"),
    (DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (DeliveryLimitExceeded, "INTERNAL"),
    (DeadLettered, "INTERNAL"),
    (InvalidModel, "INVALID_ARGUMENT"),
    (ModelTooLarge, "RESOURCE_EXHAUSTED"),
    (ModelFileNotFound, "NOT_FOUND"),
    (InvalidModelFileKey, "INVALID_ARGUMENT"),
    (ModelStoreUnavailable, "UNAVAILABLE"),
)


def door_codes(error: InferqError) -> DoorCodes:
    """The table's row of ``error``'s class; for a class outside the table (a subclass made
    elsewhere), its own HTTP status and its nearest listed base class's gRPC code."""
    codes = ERROR_CODES.get(type(error))
    if codes is not None:
        return codes
    base = next(ERROR_CODES[c] for c in type(error).__mro__ if c in ERROR_CODES)
    return DoorCodes(error.status_code, base.grpc)


def http_status(error: InferqError) -> int:
    return door_codes(error).http


def grpc_code(error: InferqError) -> str:
    """The name of ``error``'s `grpc.StatusCode` (``getattr(grpc.StatusCode, name)``)."""
    return door_codes(error).grpc


def websocket_frame(error: InferqError, frame_id: Any) -> dict[str, Any]:
    """The WebSocket error frame answering the client's frame ``frame_id`` (None where the
    frame had no readable id): ``{"type": "error", "id", "error": {type, message, ...}}``."""
    return {"type": "error", "id": frame_id, **error.to_json()}


def websocket_close(error: InferqError) -> int:
    """The close code of a WebSocket that ``error`` ends."""
    return door_codes(error).websocket_close


def error_from_json(status: int, body: Any) -> InferqError:
    """The error an answer's JSON ``{"error": {"type", "message", ...}}`` names, as its class
    in this hierarchy (a client's view of a door's error); a type no class has (an error a
    user's model raised, FastAPI's ``HTTPError``) is an `InferqError` carrying that type and
    the status."""
    fields = body.get("error") if isinstance(body, dict) else None
    if not isinstance(fields, dict):
        fields = {"type": "InternalError", "message": str(body)}
    fields = dict(fields)
    error_type = str(fields.pop("type", "InternalError"))
    message = str(fields.pop("message", ""))
    cls = _BY_TYPE.get(error_type, InferqError)
    error = cls.__new__(cls)
    InferqError.__init__(error, message, **fields)
    if cls is InferqError or error.error_type != error_type:
        error.error_type = error_type
        error.status_code = status
    return error


# A private base (`_RetryLater`) has no type of its own on the wire.
_BY_TYPE: dict[str, type[InferqError]] = {
    cls.error_type: cls for cls in ERROR_CODES if not cls.__name__.startswith("_")
}
