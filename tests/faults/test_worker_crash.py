"""Contract 1: a worker killed (SIGKILL) mid-inference loses no accepted task; each one is
redelivered, ends succeeded, and its result is stored once."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.faults.probes import FinalWrites, pid_of, running, submit, wait_final
from tests.stack import Stack, wait_until

TASKS = 90
KILLS = 3


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_sigkill_mid_inference_under_load_loses_nothing(stack: Stack, queue_type: str) -> None:
    stack.env["INFERQ_QUEUE_TYPE"] = queue_type
    stack.start_gateway()
    workers = [stack.start_worker("sleep") for _ in range(3)]
    stack.wait_live("sleep", 3)
    killed_mid_run: dict[str, int] = {}  # task id -> pid of the worker killed while running it

    with FinalWrites(stack.namespace) as writes, httpx.Client(base_url=stack.url) as client:
        expected = {submit(client, "sleep", {"ms": 100 + i}): 100 + i for i in range(TASKS)}
        ids = list(expected)
        for round_ in range(KILLS):
            victim = workers[round_ % len(workers)]

            wait_until(
                lambda v=victim: running(stack.namespace, ids, v.pid),
                20,
                f"a task running on worker {victim.pid}",
            )
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            # Still "running" on a dead worker: it was killed in the middle of these.
            for task_id in running(stack.namespace, ids, victim.pid):
                killed_mid_run[task_id] = victim.pid
            workers[workers.index(victim)] = stack.start_worker("sleep")

        views = wait_final(client, ids, timeout=60)

    assert killed_mid_run, "no kill landed mid-inference; the test proved nothing"
    not_succeeded = {t: v["status"] for t, v in views.items() if v["status"] != "succeeded"}
    assert not not_succeeded, stack.logs()
    assert all(views[t]["result"] == {"slept_ms": ms} for t, ms in expected.items())
    for task_id, dead_pid in killed_mid_run.items():
        # Redelivered and run again, by another worker.
        assert views[task_id]["attempts"] >= 2, views[task_id]
        assert pid_of(views[task_id]["worker_id"]) != dead_pid
    # Each task's final state was written exactly once: no redelivery overwrote a result.
    assert writes.more_than_once() == {}
    assert set(writes.counts) == set(ids)
