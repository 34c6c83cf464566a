"""`AsyncClient`: the gateway's native REST API from asyncio code, over httpx; the same calls as
`inferq_client.client.Client`, awaited."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any

import httpx
from websockets.asyncio.client import connect

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


class AsyncClient:
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
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout_s + MAX_WAIT_S
        )

    async def predict(
        self,
        model: str,
        body: Body,
        *,
        wait: float = MAX_WAIT_S,
        timeout: float | None = None,  # noqa: ASYNC109 - the task's deadline, as the API's
    ) -> Task:
        """Submits one prediction and waits up to ``wait`` seconds for its end: the task,
        finished if it ended by then (its ``output()`` is the result). ``timeout``: the
        task's deadline (the gateway's default if None)."""
        give_up = time.monotonic() + wait
        task = await self._post(model, body, min(wait, MAX_WAIT_S), timeout)
        left = give_up - time.monotonic()
        if task.finished or left <= 0:
            return task
        return await AsyncTaskHandle(self, task.task_id).wait(left)

    async def submit(
        self,
        model: str,
        body: Body,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the task's deadline
    ) -> AsyncTaskHandle:
        """Submits one prediction without waiting: a handle on its task."""
        return AsyncTaskHandle(self, (await self._post(model, body, 0, timeout)).task_id)

    def task(self, task_id: str) -> AsyncTaskHandle:
        """A handle on a task submitted earlier."""
        return AsyncTaskHandle(self, task_id)

    async def stream(
        self,
        model: str,
        bodies: Iterable[Body],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the tasks' deadline
        in_flight: int = STREAM_IN_FLIGHT,
    ) -> AsyncIterator[StreamItem]:
        """Predicts each of ``bodies`` over one WebSocket (`/ws`), ``in_flight`` at a time,
        and yields each answer as its task ends (not in input order: ``index`` says which)."""
        async with connect(websocket_url(self.base_url), additional_headers=self.headers) as socket:
            inputs, pending = iter(enumerate(bodies)), 0
            while True:
                while pending < in_flight and (item := next(inputs, None)) is not None:
                    await socket.send(stream_frame(item[0], model, item[1], timeout))
                    pending += 1
                if not pending:
                    return
                found = stream_item(json.loads(await socket.recv()))
                if found is not None:
                    pending -= 1
                    yield found

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _post(self, model: str, body: Body, wait_s: float, timeout_s: float | None) -> Task:
        content, content_type = encode(body)
        response = await self._http.post(
            predict_path(model),
            params=predict_query(wait_s, timeout_s),
            content=content,
            headers={"Content-Type": content_type},
        )
        return answer(response.status_code, json_or_text(response.content))

    async def _get(self, task_id: str, wait_s: float) -> Task:
        params = {"wait": f"{wait_s:g}"} if wait_s > 0 else {}
        response = await self._http.get(f"/tasks/{task_id}", params=params)
        return answer(response.status_code, json_or_text(response.content))


class AsyncTaskHandle:
    """A task submitted through an `AsyncClient`."""

    def __init__(self, client: AsyncClient, task_id: str) -> None:
        self.client = client
        self.task_id = task_id

    async def status(self) -> Task:
        """The task as it is now."""
        return await self.client._get(self.task_id, 0)

    async def wait(self, timeout: float) -> Task:  # noqa: ASYNC109 - the gateway's long poll
        """The task once it ends, or as it is when ``timeout`` seconds passed."""
        give_up = time.monotonic() + timeout
        while True:
            left = give_up - time.monotonic()
            task = await self.client._get(self.task_id, min(max(left, 0), MAX_WAIT_S))
            if task.finished or time.monotonic() >= give_up:
                return task

    async def result(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 - as wait
        """The task's result once it ends (waiting up to ``timeout`` seconds, None: as long
        as it takes): `TaskFailed` if it failed or expired, `TimeoutError` if still pending."""
        task = await self.wait(timeout if timeout is not None else float("inf"))
        return task.output()

    def __repr__(self) -> str:
        return f"AsyncTaskHandle({self.task_id!r})"
