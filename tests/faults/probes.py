"""What the fault tests observe: the task views a client sees, and two probes a client does not
have — each task's raw record (to catch the moment a given worker runs it) and the count of
final writes per task (the task-done channel announces each write of a final state once)."""

from __future__ import annotations

import collections
import time
import uuid
from typing import Any

import httpx
import redis

from inferq.names import Names
from inferq.settings import CommonSettings
from inferq.tasks.store import read_notice

FINAL = frozenset({"succeeded", "failed", "expired"})

SHARED = CommonSettings()
RECONNECTABLE = (redis.ConnectionError, redis.TimeoutError)  # what a Redis restart raises


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
    """Raw task records straight from Redis: id -> {field: value} (str; a binary ``result``
    read with its undecodable bytes replaced: the probes read the other fields)."""
    names = Names(namespace)
    with redis.Redis.from_url(redis_url, socket_timeout=5) as client:
        pipe = client.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hgetall(names.task(task_id))
        return {
            task_id: {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}
            for task_id, fields in zip(task_ids, pipe.execute(), strict=True)
        }


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
    announces the task on the namespace's task-done channel, and only such writes do.

    A count is only as true as the subscriber behind it, so a subscriber that errs or stops
    listening fails the test: its error is raised by `more_than_once` and on leaving the
    ``with`` block. Both, and entering, first wait for a probe of their own to come back
    through the subscription: every final write made before then is counted, and a deaf
    subscriber cannot pass for one that heard no write twice.
    """

    def __init__(
        self, namespace: str, redis_url: str = SHARED.redis_url, survives_restarts: bool = False
    ) -> None:
        """``survives_restarts``: the test restarts this Redis; the subscriber reconnects
        (and resubscribes) instead of failing. A write in the instant before it is back would
        go uncounted, never counted twice."""
        self.counts: collections.Counter[str] = collections.Counter()
        self.errors: list[BaseException] = []
        self._survives_restarts = survives_restarts
        self._client = redis.Redis.from_url(redis_url, socket_timeout=5)
        self._pubsub = self._client.pubsub()
        self._channel = Names(namespace).task_done_channel
        # The probes go on a channel of their own: the gateway also listens to task-done.
        self._probe_channel = f"{self._channel}.probe-{uuid.uuid4().hex}"
        self._probes_sent = self._probe_heard = 0
        self._thread: redis.client.PubSubWorkerThread | None = None

    def __enter__(self) -> FinalWrites:
        self._pubsub.subscribe(
            **{self._channel: self._on_message, self._probe_channel: self._on_probe}
        )
        self._thread = self._pubsub.run_in_thread(
            sleep_time=0.05, daemon=True, exception_handler=self._on_error
        )
        try:
            self._flush()  # subscribed, and listening, before the test writes anything
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        try:
            if error_type is None and self._thread is not None:
                self._flush()
        finally:
            self._close()
        if error_type is None:
            self._raise_errors()

    def more_than_once(self) -> dict[str, int]:
        """The tasks whose final state was written more than once (all writes so far)."""
        if self._thread is not None:
            self._flush()
        self._raise_errors()
        return {task_id: n for task_id, n in self.counts.items() if n > 1}

    def _on_message(self, message: dict[str, Any]) -> None:
        for state in read_notice(message["data"]):
            self.counts[state.task_id] += 1

    def _on_probe(self, message: dict[str, Any]) -> None:
        self._probe_heard = int(message["data"])

    def _on_error(
        self, error: BaseException, pubsub: object, thread: redis.client.PubSubWorkerThread
    ) -> None:
        self.errors.append(error)
        if self._survives_restarts and isinstance(error, RECONNECTABLE):
            time.sleep(0.1)  # keep listening: the client resubscribes when it reconnects
        else:
            thread.stop()  # its counts are no longer to be trusted; the test raises the error

    def _flush(self, timeout: float = 10) -> None:
        """Wait until a probe published now comes back: Redis delivers one subscriber's
        messages in order, so every task-done message published before it was counted."""
        self._probes_sent += 1
        probe, deadline = self._probes_sent, time.monotonic() + timeout
        while self._probe_heard < probe:
            self._raise_errors()
            if time.monotonic() > deadline or not (self._thread and self._thread.is_alive()):
                raise AssertionError(
                    f"the task-done subscriber did not hear its probe in {timeout}s: "
                    f"its counts cannot be trusted (errors: {self.errors!r})"
                )
            # Published again until heard: the subscription may not be active yet.
            self._client.publish(self._probe_channel, probe)
            time.sleep(0.05)

    def _raise_errors(self) -> None:
        fatal = [
            e for e in self.errors if not (self._survives_restarts and isinstance(e, RECONNECTABLE))
        ]
        if fatal:
            raise AssertionError(f"the task-done subscriber failed: {fatal!r}") from fatal[0]

    def _close(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread.join(5)
            self._thread = None
        self._pubsub.close()
        self._client.close()
