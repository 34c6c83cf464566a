"""Contract 2: a task whose input makes the model raise ends failed at once, with the error;
a task that crashes its worker again and again ends failed after the delivery limit — never
an endless crash loop."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from types import TracebackType

import httpx
import pytest

from tests.faults.models import CRASH, RAISE
from tests.faults.probes import pid_of, submit, view, wait_final
from tests.stack import Stack, wait_until

POISON = "tests.faults.models:PoisonModel"
# Classic queues (the default) count a task's starts in Redis; quorum queues also have the
# broker's own delivery limit and the dead-letter queue. Both must end the loop.
QUEUE_TYPES = pytest.mark.parametrize("queue_type", ["classic", "quorum"])
DELIVERY_LIMIT = 2


class KeepRestarting:
    """Keeps one worker process running: starts a new one each time it dies, as a process
    supervisor (systemd, Kubernetes) would. Counts the deaths."""

    def __init__(self, stack: Stack, target: str, **env: str) -> None:
        self._stack, self._target, self._env = stack, target, env
        self.deaths = 0
        self._stopping = threading.Event()
        self.current: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> KeepRestarting:
        self._thread.start()
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stopping.set()
        if self.current is not None and self.current.poll() is None:
            self.current.terminate()
        self._thread.join(20)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self.current = self._stack.start_worker(self._target, **self._env)
            self.current.wait()
            if not self._stopping.is_set():
                self.deaths += 1


def queue_depth(client: httpx.Client) -> int:
    return int(client.get("/models/poison").json()["queue_depth"])


def test_a_model_that_raises_fails_the_task_at_once_with_its_error(stack: Stack) -> None:
    stack.start_gateway()
    stack.start_worker(POISON)
    stack.wait_live("poison")
    with httpx.Client(base_url=stack.url, timeout=15) as client:
        started = time.monotonic()
        response = client.post("/predict/poison", json={"ms": RAISE}, params={"wait": 10})
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        task = response.json()
        assert task["status"] == "failed"
        assert task["error"] == {"type": "ValueError", "message": "poisoned input: ms=-1"}
        assert task["attempts"] == 1  # not retried: a raising model is not a crash
        assert elapsed < 5  # at once, not after redeliveries
        # The worker is unharmed and serves the next task.
        ok = client.post("/predict/poison", json={"ms": 1}, params={"wait": 10}).json()
        assert ok["status"] == "succeeded" and ok["result"] == {"slept_ms": 1}


def test_a_raising_request_in_a_batch_fails_only_its_own_task(stack: Stack) -> None:
    stack.start_gateway()
    stack.start_worker("tests.faults.models:PoisonBatchModel")
    stack.wait_live("poison_batch")
    with httpx.Client(base_url=stack.url, timeout=15) as client:
        inputs = [5, 6, RAISE, 7, 8]
        ids = [submit(client, "poison_batch", {"ms": ms}) for ms in inputs]
        views = wait_final(client, ids, timeout=20)
    for task_id, ms in zip(ids, inputs, strict=True):
        if ms == RAISE:
            assert views[task_id]["status"] == "failed"
            assert views[task_id]["error"]["type"] == "ValueError"
        else:
            assert views[task_id]["status"] == "succeeded", views[task_id]
            assert views[task_id]["result"] == {"slept_ms": ms}


@QUEUE_TYPES
def test_a_task_that_crashes_its_worker_fails_after_the_delivery_limit(
    stack: Stack, queue_type: str
) -> None:
    stack.env["INFERQ_QUEUE_TYPE"] = queue_type
    stack.env["INFERQ_DELIVERY_LIMIT"] = str(DELIVERY_LIMIT)
    stack.start_gateway()
    with KeepRestarting(stack, POISON) as worker, httpx.Client(base_url=stack.url) as client:
        stack.wait_live("poison")
        task_id = submit(client, "poison", {"ms": CRASH})
        wait_until(
            lambda: view(client, task_id)["status"] == "failed",
            60,
            "the crashing task to be failed",
        )
        task = view(client, task_id)
        assert task["error"]["type"] == "DeliveryLimitExceeded", task
        # Delivered (and crashed its worker) past the limit, then no more.
        assert DELIVERY_LIMIT <= worker.deaths <= DELIVERY_LIMIT + 1, worker.deaths
        assert task["attempts"] == worker.deaths
        # The loop is over: the restarted worker serves the next task and stays up.
        deaths = worker.deaths
        stack.wait_live("poison")
        ok = client.post("/predict/poison", json={"ms": 1}, params={"wait": 20}).json()
        assert ok["status"] == "succeeded", ok
        assert worker.deaths == deaths


@QUEUE_TYPES
def test_tasks_fetched_with_a_crashing_one_are_not_failed_with_it(
    stack: Stack, queue_type: str
) -> None:
    """The worker prefetches several tasks; when a poisoned one kills it, the innocent tasks
    it held go back to the queue too. They must still end succeeded, not be dead-lettered
    for the crashes of another task."""
    stack.env["INFERQ_QUEUE_TYPE"] = queue_type
    stack.env["INFERQ_DELIVERY_LIMIT"] = str(DELIVERY_LIMIT)
    stack.start_gateway()
    with KeepRestarting(stack, POISON) as worker, httpx.Client(base_url=stack.url) as client:
        stack.wait_live("poison")
        # Hold the worker still while the tasks are queued, so that all of them are in its
        # prefetch from the first crash on (the broker delivers them to a stopped process).
        first = worker.current
        assert first is not None
        first.send_signal(signal.SIGSTOP)
        poisoned = submit(client, "poison", {"ms": CRASH})
        innocent = [submit(client, "poison", {"ms": 10 + i}) for i in range(3)]
        # What an operator sees: none waits in the queue, so the stopped worker holds them all.
        wait_until(lambda: queue_depth(client) == 0, 5, "the stopped worker to hold every task")
        first.send_signal(signal.SIGCONT)
        views = wait_final(client, [poisoned, *innocent], timeout=60)
        last = worker.current
    assert views[poisoned]["error"]["type"] == "DeliveryLimitExceeded"
    failed = {t: views[t].get("error") for t in innocent if views[t]["status"] != "succeeded"}
    assert not failed, f"innocent tasks failed with the poisoned one ({worker.deaths} crashes)"
    # They were given back, not run by a worker that crashed: the worker that held them
    # died, and they ran on the one that took over once the poisoned task was failed.
    assert DELIVERY_LIMIT <= worker.deaths <= DELIVERY_LIMIT + 1, worker.deaths
    assert last is not None and last is not first
    ran_on = {pid_of(views[t]["worker_id"]) for t in innocent}
    assert ran_on == {last.pid}, (ran_on, first.pid, last.pid)
