"""`Client`: the gateway's native REST API from synchronous code, over httpx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import httpx
from websockets.sync.client import connect

from inferq_client.task import StreamItem, Task, answer, stream_item
from inferq_client.wire import (
    MAX_WAIT_S,
    STREAM_IN_FLIGHT,
    Body,
    encode,
    json_or_text,
    predict_path,
    predict_query,
    request_headers,
    stream_frame,
    websocket_url,
)


class Client:
    """A gateway at ``base_url`` (``http://127.0.0.1:8000``). Errors the gateway answers are
    raised as their `inferq.errors` class (`ModelNotFound`, `InvalidRequest`, `QueueFull`
    ...); a network failure as httpx's own error."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        """``api_key``: sent as ``Authorization: Bearer`` (None: ``$INFERQ_API_KEY``, if
        set); ``headers``: sent with every call."""
        self.base_url = base_url.rstrip("/")
        self.headers = request_headers(headers, api_key)
        # A call holds at most MAX_WAIT_S for a task; the rest is the network's share.
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=timeout_s + MAX_WAIT_S
        )

    def predict(
        self, model: str, body: Body, *, wait: float = MAX_WAIT_S, timeout: float | None = None
    ) -> Task:
        """Submits one prediction and waits up to ``wait`` seconds for its end: the task,
        finished if it ended by then (its ``output()`` is the result). ``timeout``: the
        task's deadline (the gateway's default if None)."""
        give_up = time.monotonic() + wait
        task = self._post(model, body, min(wait, MAX_WAIT_S), timeout)
        left = give_up - time.monotonic()
        if task.finished or left <= 0:
            return task
        return TaskHandle(self, task.task_id).wait(left)

    def submit(self, model: str, body: Body, *, timeout: float | None = None) -> TaskHandle:
        """Submits one prediction without waiting: a handle on its task."""
        return TaskHandle(self, self._post(model, body, 0, timeout).task_id)

    def task(self, task_id: str) -> TaskHandle:
        """A handle on a task submitted earlier."""
        return TaskHandle(self, task_id)

    def stream(
        self,
        model: str,
        bodies: Iterable[Body],
        *,
        timeout: float | None = None,
        in_flight: int = STREAM_IN_FLIGHT,
    ) -> Iterator[StreamItem]:
        """Predicts each of ``bodies`` over one WebSocket (`/ws`), ``in_flight`` at a time,
        and yields each answer as its task ends (not in input order: ``index`` says which)."""
        with connect(websocket_url(self.base_url), additional_headers=self.headers) as socket:
            inputs, pending = iter(enumerate(bodies)), 0
            while True:
                while pending < in_flight and (item := next(inputs, None)) is not None:
                    socket.send(stream_frame(item[0], model, item[1], timeout))
                    pending += 1
                if not pending:
                    return
                found = stream_item(json.loads(socket.recv()))
                if found is not None:
                    pending -= 1
                    yield found

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _post(self, model: str, body: Body, wait_s: float, timeout_s: float | None) -> Task:
        content, content_type = encode(body)
        response = self._http.post(
            predict_path(model),
            params=predict_query(wait_s, timeout_s),
            content=content,
            headers={"Content-Type": content_type},
        )
        return answer(response.status_code, json_or_text(response.content))

    def _get(self, task_id: str, wait_s: float) -> Task:
        params = {"wait": f"{wait_s:g}"} if wait_s > 0 else {}
        response = self._http.get(f"/tasks/{task_id}", params=params)
        return answer(response.status_code, json_or_text(response.content))


class TaskHandle:
    """A task submitted through a `Client`."""

    def __init__(self, client: Client, task_id: str) -> None:
        self.client = client
        self.task_id = task_id

    def status(self) -> Task:
        """The task as it is now."""
        return self.client._get(self.task_id, 0)

    def wait(self, timeout: float) -> Task:
        """The task once it ends, or as it is when ``timeout`` seconds passed."""
        give_up = time.monotonic() + timeout
        while True:
            left = give_up - time.monotonic()
            task = self.client._get(self.task_id, min(max(left, 0), MAX_WAIT_S))
            if task.finished or time.monotonic() >= give_up:
                return task

    def result(self, timeout: float | None = None) -> Any:
        """The task's result once it ends (waiting up to ``timeout`` seconds, None: as long
        as it takes): `TaskFailed` if it failed or expired, `TimeoutError` if still pending."""
        task = self.wait(timeout if timeout is not None else float("inf"))
        return task.output()

    def __repr__(self) -> str:
        return f"TaskHandle({self.task_id!r})"
