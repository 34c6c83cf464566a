"""The one table from the error hierarchy to each front door's code (`inferq.errors`)."""

from __future__ import annotations

import pytest

from inferq import errors
from inferq.errors import (
    ERROR_CODES,
    InferqError,
    InvalidRequest,
    ModelNotFound,
    ModelUnavailable,
    QueueFull,
    error_from_json,
    grpc_code,
    http_status,
    websocket_close,
    websocket_frame,
)

# The names of grpc.StatusCode (the kernel does not import grpc to check them).
GRPC_CODES = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
}  # fmt: skip


def hierarchy() -> list[type[InferqError]]:
    found, todo = [], [InferqError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_class_of_the_hierarchy_has_a_row() -> None:
    # The hierarchy's classes are all in `inferq.errors`; a test's own subclass is not.
    defined = {c for c in hierarchy() if c.__module__ == errors.__name__}
    assert defined - set(ERROR_CODES) == set()


@pytest.mark.parametrize("cls", list(ERROR_CODES), ids=[c.__name__ for c in ERROR_CODES])
def test_a_row_agrees_with_its_class(cls: type[InferqError]) -> None:
    codes = ERROR_CODES[cls]
    assert codes.http == cls.status_code
    assert codes.grpc in GRPC_CODES and codes.grpc != "OK"
    assert 4000 <= codes.websocket_close <= 4999  # RFC 6455: the applications' range


def test_each_door_reads_the_row_of_the_errors_class() -> None:
    error = ModelNotFound("no model 'nope'", model="nope")
    assert (http_status(error), grpc_code(error), websocket_close(error)) == (
        404,
        "NOT_FOUND",
        4404,
    )
    assert websocket_frame(error, 7) == {
        "type": "error",
        "id": 7,
        "error": {"type": "ModelNotFound", "message": "no model 'nope'", "model": "nope"},
    }
    assert grpc_code(QueueFull("full", 1)) == "RESOURCE_EXHAUSTED"
    assert grpc_code(ModelUnavailable("starting", 1)) == "UNAVAILABLE"


def test_a_subclass_outside_the_table_keeps_its_status_and_takes_its_bases_grpc_code() -> None:
    class Special(InvalidRequest):
        status_code = 400

    assert (http_status(Special("x")), grpc_code(Special("x"))) == (400, "INVALID_ARGUMENT")
    assert websocket_close(Special("x")) == 4400


def test_an_errors_json_reads_back_as_its_class() -> None:
    error = error_from_json(404, ModelNotFound("no model 'x'", model="x").to_json())
    assert type(error) is ModelNotFound
    assert (error.message, error.details, error.status_code) == (
        "no model 'x'",
        {"model": "x"},
        404,
    )
    assert type(error_from_json(503, {"error": {"type": "ModelUnavailable", "message": "m"}})) is (
        ModelUnavailable
    )


def test_a_type_no_class_has_keeps_its_name_and_status() -> None:
    error = error_from_json(500, {"error": {"type": "ValueError", "message": "bad input"}})
    assert type(error) is InferqError
    assert (error.error_type, error.status_code, error.message) == ("ValueError", 500, "bad input")
    assert error_from_json(502, "Bad Gateway").status_code == 502
