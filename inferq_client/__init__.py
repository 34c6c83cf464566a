"""inferq's Python client: the gateway's native REST API, sync (`Client`) and async
(`AsyncClient`).

    with Client("http://127.0.0.1:8000") as client:
        task = client.predict("model_a", {"data": "hi"})  # waits up to 30 s
        print(task.output())  # {'reply': 'Processed message: hi'}
        handle = client.submit("model_a", {"data": "later"})
        print(handle.result(timeout=60))
        for item in client.stream("model_a", [{"data": "x"}, {"data": "y"}]):
            print(item.index, item.task.output() if item.task else item.error)

A body is the model's request message as JSON (a mapping) or binary protobuf (bytes, or a
protobuf message). The gateway's errors are raised as their `inferq.errors` class; a task that
failed or expired raises `TaskFailed` from `Task.output()` / `result()`. `stream` uses one
WebSocket (`/ws`) for all its inputs. This package imports only `inferq` of the project.
"""

from inferq_client.aio import AsyncClient, AsyncTaskHandle
from inferq_client.client import Client, TaskHandle
from inferq_client.task import StreamItem, Task, TaskFailed

__all__ = [
    "AsyncClient",
    "AsyncTaskHandle",
    "Client",
    "StreamItem",
    "Task",
    "TaskFailed",
    "TaskHandle",
]
