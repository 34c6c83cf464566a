"""What the fault tests observe: the task views a client sees, and two probes a client does not
have — each task's raw record (to catch the moment a given worker runs it) and the count of
final writes per task (the task-done channel announces each write of a final state once)."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import httpx
import redis

from inferq.names import Names
from inferq.settings import CommonSettings
from inferq.tasks import read_notice

FINAL = frozenset({"succeeded", "failed", "expired"})

SHARED = CommonSettings()


def submit(client: httpx.Client, model: str, body: dict[str, Any], **params: Any) -> str:
    """POST a task; it must be accepted (202). Returns its id."""
    response = client.post(f"/predict/{model}", json=body, params=params)
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def view(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 200, f"{task_id}: {response.status_code} {response.text}"
    return dict(response.json())


def wait_final(
    client: httpx.Client, task_ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Every task's view once all are final. Fails naming the ones that are not, in time."""
    views: dict[str, dict[str, Any]] = {}
    pending = list(task_ids)
    deadline = time.monotonic() + timeout
    while pending:
        for task_id in pending:
            views[task_id] = view(client, task_id)
        pending = [t for t in pending if views[t]["status"] not in FINAL]
        if pending and time.monotonic() > deadline:
            stuck = {t: views[t]["status"] for t in pending[:10]}
            raise AssertionError(f"{len(pending)} task(s) not final after {timeout}s: {stuck}")
        if pending:
            time.sleep(0.2)
    return views


def records(namespace: str, task_ids: list[str], redis_url: str = SHARED.redis_url) -> dict:  # type: ignore[type-arg]
    """Raw task records straight from Redis: id -> {field: value} (str)."""
    names = Names(namespace)
    with redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5) as client:
        pipe = client.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hgetall(names.task(task_id))
        return dict(zip(task_ids, pipe.execute(), strict=True))


def running(
    namespace: str, task_ids: list[str], pid: int | None = None, redis_url: str = SHARED.redis_url
) -> list[str]:
    """The tasks whose record says they are running (on the worker with process ``pid``)."""
    return [
        task_id
        for task_id, record in records(namespace, task_ids, redis_url).items()
        if record.get("status") == "running" and (pid is None or pid_of(record["worker_id"]) == pid)
    ]


def pid_of(worker_id: str | None) -> int | None:
    """The process id inside a worker id (``host-pid-rand``)."""
    if not worker_id:
        return None
    return int(worker_id.rsplit("-", 2)[-2])


class FinalWrites:
    """Counts, per task, how often a final state was written: each write of a final state
    announces the task on the namespace's task-done channel, and only such writes do."""

    def __init__(self, namespace: str, redis_url: str = SHARED.redis_url) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._client = redis.Redis.from_url(redis_url)
        self._pubsub = self._client.pubsub()
        self._channel = Names(namespace).task_done_channel
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FinalWrites:
        self._pubsub.subscribe(**{self._channel: self._on_message})
        # Wait for the subscription to be confirmed: writes from now on are all counted.
        deadline = time.monotonic() + 10
        while (message := self._pubsub.get_message(timeout=1)) is None or message["type"] != (
            "subscribe"
        ):
            assert time.monotonic() < deadline, "no confirmation of the task-done subscription"
        self._thread = self._pubsub.run_in_thread(
            sleep_time=0.05, daemon=True, exception_handler=_resubscribe_later
        )
        return self

    def __exit__(self, *_: object) -> None:
        if self._thread is not None:
            self._thread.stop()  # type: ignore[attr-defined]
            self._thread.join(5)
        self._pubsub.close()
        self._client.close()

    def _on_message(self, message: dict[str, Any]) -> None:
        for state in read_notice(message["data"]):
            self.counts[state.task_id] += 1

    def more_than_once(self) -> dict[str, int]:
        return {task_id: n for task_id, n in self.counts.items() if n > 1}


def _resubscribe_later(error: BaseException, pubsub: object, thread: object) -> None:
    """Redis went away (a restart test): keep listening; the client resubscribes when it
    reconnects. A write in the instant before that would go uncounted, never counted twice."""
    time.sleep(0.1)
