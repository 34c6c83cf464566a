from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("model", "request", "request_json", "wait_s", "deadline_s", "idempotency_key")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    model: str
    request: bytes
    request_json: str
    wait_s: float
    deadline_s: float
    idempotency_key: str
    def __init__(self, model: _Optional[str] = ..., request: _Optional[bytes] = ..., request_json: _Optional[str] = ..., wait_s: _Optional[float] = ..., deadline_s: _Optional[float] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id", "wait_s")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    wait_s: float
    def __init__(self, task_id: _Optional[str] = ..., wait_s: _Optional[float] = ...) -> None: ...

class WatchTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class TaskError(_message.Message):
    __slots__ = ("type", "message")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "model", "status", "created_at_ms", "started_at_ms", "finished_at_ms", "deadline_ms", "worker_id", "attempts", "result", "result_type", "error")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RESULT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    model: str
    status: str
    created_at_ms: int
    started_at_ms: int
    finished_at_ms: int
    deadline_ms: int
    worker_id: str
    attempts: int
    result: bytes
    result_type: str
    error: TaskError
    def __init__(self, task_id: _Optional[str] = ..., model: _Optional[str] = ..., status: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., started_at_ms: _Optional[int] = ..., finished_at_ms: _Optional[int] = ..., deadline_ms: _Optional[int] = ..., worker_id: _Optional[str] = ..., attempts: _Optional[int] = ..., result: _Optional[bytes] = ..., result_type: _Optional[str] = ..., error: _Optional[_Union[TaskError, _Mapping]] = ...) -> None: ...
