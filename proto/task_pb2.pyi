from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskEnvelope(_message.Message):
    __slots__ = ("task_id", "model", "request", "created_at_ms", "deadline_ms", "trace_context", "caller_key_id", "caller_name", "in_flight_limited")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CALLER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_NAME_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_LIMITED_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    model: str
    request: bytes
    created_at_ms: int
    deadline_ms: int
    trace_context: _containers.ScalarMap[str, str]
    caller_key_id: str
    caller_name: str
    in_flight_limited: bool
    def __init__(self, task_id: _Optional[str] = ..., model: _Optional[str] = ..., request: _Optional[bytes] = ..., created_at_ms: _Optional[int] = ..., deadline_ms: _Optional[int] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., caller_key_id: _Optional[str] = ..., caller_name: _Optional[str] = ..., in_flight_limited: _Optional[bool] = ...) -> None: ...

class TaskBatch(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskEnvelope]
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskEnvelope, _Mapping]]] = ...) -> None: ...
