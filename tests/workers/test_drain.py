"""Contract 6: SIGTERM drains. A worker holding several deliveries stops taking work,
finishes the task it is running, gives back the ones it had not started, leaves the
registry and exits 0; a task still running when the grace period ends is cut and runs again
on another worker. Nothing is lost, nothing is stored twice."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.faults.probes import SHARED, FinalWrites, pid_of, running, submit, view, wait_final
from tests.faults.proxy import TcpProxy, port_of
from tests.models.slow_unload import UNLOAD_S
from tests.stack import Stack, wait_until

HELD = 3  # deliveries the draining worker holds but has not started (prefetch 4, one runs)
LATE = 3  # tasks submitted after the SIGTERM
GRACE_S = 1.5  # the grace period of the test that runs past it
# The draining worker heartbeats rarely: its key would outlive the test, so only
# deregistration explains it leaving the registry at once.
DRAINING = {"INFERQ_PREFETCH": "4", "INFERQ_CONCURRENCY": "1", "INFERQ_HEARTBEAT_INTERVAL_S": "30"}


@pytest.fixture
def amqp_proxy() -> Iterator[TcpProxy]:
    """A proxy to RabbitMQ. Requested before `stack`, so it still forwards while the stack's
    processes are stopped."""
    proxy = TcpProxy(port_of(SHARED.amqp_url)).start()
    yield proxy
    proxy.close()


def start_draining_worker(
    stack: Stack, target: str = "sleep", model: str = "sleep", **env: str
) -> subprocess.Popen[bytes]:
    """The worker to SIGTERM, started while the gateway boots (the two start in parallel)."""
    worker = stack.start_worker(target, **DRAINING, **env)
    stack.start_gateway()
    stack.wait_live(model)
    return worker


def model_view(client: httpx.Client, model: str) -> dict[str, Any]:
    response = client.get(f"/models/{model}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def hold(
    client: httpx.Client, namespace: str, worker: subprocess.Popen[bytes], running_ms: int
) -> tuple[str, dict[str, int]]:
    """Submits a task that ``worker`` then runs, and HELD more that it takes from the queue
    (its prefetch) without starting them. Returns the running task and {held task: ms}."""
    running_id = submit(client, "sleep", {"ms": running_ms})
    wait_until(lambda: running(namespace, [running_id], worker.pid), 10, "the task running")
    held = {submit(client, "sleep", {"ms": 100 + i}): 100 + i for i in range(HELD)}
    # None left in the queue, and no other consumer: the worker holds them all.
    wait_until(lambda: model_view(client, "sleep")["queue_depth"] == 0, 10, "tasks held")
    return running_id, held


def submit_late(client: httpx.Client) -> dict[str, int]:
    return {submit(client, "sleep", {"ms": 200 + i}): 200 + i for i in range(LATE)}


def assert_left_the_registry(client: httpx.Client, model: str, pid: int) -> None:
    time.sleep(0.3)  # the gateway's registry cache
    pids = {worker["pid"] for worker in model_view(client, model)["workers"]}
    assert pid not in pids, pids


def assert_run_once_by(
    views: dict[str, dict[str, Any]], expected: dict[str, int], pid: int
) -> None:
    for task_id, ms in expected.items():
        assert views[task_id]["status"] == "succeeded", views[task_id]
        assert views[task_id]["result"] == {"slept_ms": ms}
        assert pid_of(views[task_id]["worker_id"]) == pid, views[task_id]
        assert views[task_id]["attempts"] == 1, views[task_id]


def test_sigterm_finishes_the_running_task_and_gives_back_the_held_ones_at_once(
    stack: Stack,
) -> None:
    draining = start_draining_worker(stack)
    with FinalWrites(stack.namespace) as writes, httpx.Client(base_url=stack.url) as client:
        running_id, held = hold(client, stack.namespace, draining, running_ms=4000)
        other = stack.start_worker("sleep")
        stack.wait_live("sleep", 2)
        assert view(client, running_id)["status"] == "running", "the other worker was too slow"

        draining.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        late = submit_late(client)
        # Given back at once, not at the end of the drain: done while it still runs.
        views = wait_final(client, list(held), timeout=10)
        assert view(client, running_id)["status"] == "running"

        assert draining.wait(10) == 0, stack.logs()
        assert time.monotonic() - signalled < 5  # the stack's grace period
        assert_left_the_registry(client, "sleep", draining.pid)
        views |= wait_final(client, [running_id, *late], timeout=10)

    # The running task finished where it ran; the others ran once, all on the other worker.
    assert views[running_id]["status"] == "succeeded", views[running_id]
    assert views[running_id]["result"] == {"slept_ms": 4000}
    assert pid_of(views[running_id]["worker_id"]) == draining.pid
    assert_run_once_by(views, {**held, **late}, other.pid)
    assert writes.more_than_once() == {}
    assert set(writes.counts) == {running_id, *held, *late}


def test_a_draining_worker_starts_nothing_while_its_cancel_is_unanswered(
    amqp_proxy: TcpProxy, stack: Stack
) -> None:
    """Stopping begins with a cancel of the consumer, a round trip to the broker. A runner
    freed meanwhile must not start a held delivery: here the broker's answer is held up
    (the worker's link to it frozen) while the running task ends."""
    draining = start_draining_worker(stack, INFERQ_AMQP_URL=amqp_proxy.url(SHARED.amqp_url))
    with FinalWrites(stack.namespace) as writes, httpx.Client(base_url=stack.url) as client:
        running_id, held = hold(client, stack.namespace, draining, running_ms=1000)
        amqp_proxy.freeze()
        try:
            draining.send_signal(signal.SIGTERM)
            late = submit_late(client)
            other = stack.start_worker("sleep")
            wait_until(
                lambda: view(client, running_id)["status"] == "succeeded", 5, "the task done"
            )
            time.sleep(0.5)  # time enough to run every held task, were one started
            # In the worker's hands, or given back: either way none started.
            assert {view(client, t)["status"] for t in held} == {"queued"}
        finally:
            amqp_proxy.restore()

        assert draining.wait(10) == 0, stack.logs()
        assert_left_the_registry(client, "sleep", draining.pid)
        views = wait_final(client, [running_id, *held, *late], timeout=15)

    assert pid_of(views[running_id]["worker_id"]) == draining.pid
    assert_run_once_by(views, {**held, **late}, other.pid)
    assert writes.more_than_once() == {}
    assert set(writes.counts) == {running_id, *held, *late}


def test_a_task_longer_than_the_grace_period_is_cut_and_runs_again_elsewhere(
    stack: Stack,
) -> None:
    """Past the grace period the worker cancels what still runs, and only then leaves the
    registry and unloads the model (an unload of UNLOAD_S here): the cut task must not run
    on into the unload, but be given back and run again."""
    target, model = "tests.models.slow_unload:SlowUnloadSleep", "slow_unload_sleep"
    draining = start_draining_worker(stack, target, model, INFERQ_GRACE_PERIOD_S=str(GRACE_S))
    ms = int((GRACE_S + UNLOAD_S / 2) * 1000)  # if left running, it would end mid-unload
    with FinalWrites(stack.namespace) as writes, httpx.Client(base_url=stack.url) as client:
        cut_id = submit(client, model, {"ms": ms})
        wait_until(lambda: running(stack.namespace, [cut_id], draining.pid), 10, "running")
        draining.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        other = stack.start_worker(target)

        assert draining.wait(10) == 0, stack.logs()
        took = time.monotonic() - signalled
        assert GRACE_S <= took < GRACE_S + UNLOAD_S + 1.5, took  # grace, unload, close
        assert_left_the_registry(client, model, draining.pid)
        [cut] = wait_final(client, [cut_id], timeout=15).values()

    assert cut["status"] == "succeeded", cut
    assert cut["result"] == {"slept_ms": ms}
    assert pid_of(cut["worker_id"]) == other.pid, cut
    assert cut["attempts"] == 2, cut  # started on the draining worker, then on the other
    assert writes.more_than_once() == {}
    assert set(writes.counts) == {cut_id}
