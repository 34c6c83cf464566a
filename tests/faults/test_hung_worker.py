"""A hung worker (SIGSTOP): it holds deliveries but answers nothing. The gateway stays
responsive, the other worker keeps serving, the registry drops the hung one, and the broker
gives its deliveries back once the AMQP heartbeat declares its connection dead. When it wakes
up, its stale results overwrite nothing, and it serves again by itself."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from inferq.settings import WorkerSettings
from tests.faults.probes import FinalWrites, pid_of, running, submit, wait_final
from tests.stack import Stack, wait_until

DEFAULTS = WorkerSettings.model_fields
# The broker drops a connection silent for two heartbeat timeouts at most.
BROKER_GIVES_BACK_S = 2 * DEFAULTS["amqp_heartbeat_s"].default
REGISTRY_EXPIRY_S = DEFAULTS["heartbeat_interval_s"].default * DEFAULTS["heartbeat_misses"].default


def live_workers(client: httpx.Client) -> int:
    return int(client.get("/models/sleep").json()["live_workers"])


def runs_tasks(client: httpx.Client, pid: int | None) -> bool:
    """Whether worker ``pid`` runs one of a few new tasks (the broker spreads them)."""
    views = wait_final(client, [submit(client, "sleep", {"ms": 20}) for _ in range(6)], 30)
    return any(pid_of(v["worker_id"]) == pid for v in views.values())


def state_and_cpu(pid: int) -> tuple[str, int]:
    """The states of the process's threads ('T': all stopped) and the CPU time they have
    used (ns, exact: a wake-up of a few µs shows), from /proc."""
    threads = list(Path(f"/proc/{pid}/task").iterdir())
    # /proc/.../stat: "pid (name) state ..."; /proc/.../schedstat: "run_ns wait_ns slices".
    states = {(t / "stat").read_text().rpartition(")")[2].split()[0] for t in threads}
    run_ns = sum(int((t / "schedstat").read_text().split()[0]) for t in threads)
    return "".join(sorted(states)), run_ns


def test_a_stopped_worker_stalls_nothing_and_its_tasks_come_back(stack: Stack) -> None:
    # The product's defaults: its AMQP heartbeat bounds how long the broker waits for a
    # hung consumer, and its registry heartbeat how long the worker is listed.
    stack.start_gateway()
    hung = stack.start_worker("sleep")
    stack.start_worker("sleep")
    stack.wait_live("sleep", 2)

    with FinalWrites(stack.namespace) as writes, httpx.Client(base_url=stack.url) as client:
        ids = [submit(client, "sleep", {"ms": 400 + i}) for i in range(12)]

        def held_by_hung() -> list[str]:
            return running(stack.namespace, ids, hung.pid)

        wait_until(held_by_hung, 20, "a task running on the worker to hang")
        hung.send_signal(signal.SIGSTOP)
        wait_until(lambda: state_and_cpu(hung.pid)[0] == "T", 5, "the worker to be stopped")
        stopped = state_and_cpu(hung.pid)
        stuck = held_by_hung()
        assert stuck  # a 400 ms task cannot have finished in the time it took to stop it

        # The gateway answers at once, and accepts new work.
        started = time.monotonic()
        assert client.get("/healthz").status_code == 200
        more = [submit(client, "sleep", {"ms": 10}) for _ in range(3)]
        assert time.monotonic() - started < 2
        # The hung worker's heartbeat stops: the registry drops it by itself.
        wait_until(
            lambda: live_workers(client) == 1,
            REGISTRY_EXPIRY_S + 5,
            "the hung worker to leave the registry",
        )

        # Everything ends succeeded while it is still stopped: the broker took back what it
        # held when its connection missed its heartbeats, and the other worker ran it.
        views = wait_final(client, ids + more, timeout=BROKER_GIVES_BACK_S + 15)
        # ... and it really was stopped all along: still there, still stopped, and it has
        # not run for a moment since (it finished nothing itself).
        assert hung.poll() is None and state_and_cpu(hung.pid) == stopped
        assert all(v["status"] == "succeeded" for v in views.values()), stack.logs()
        for task_id in stuck:
            assert pid_of(views[task_id]["worker_id"]) != hung.pid, views[task_id]
            assert views[task_id]["attempts"] == 2, views[task_id]

        # Woken up, it finishes its stale task: the stored result stays the first one. It
        # reconnects by itself and serves again.
        hung.send_signal(signal.SIGCONT)
        wait_until(lambda: live_workers(client) == 2, 10, "the woken worker to be live again")
        wait_until(lambda: runs_tasks(client, hung.pid), 30, "the woken worker to run tasks")
        after = wait_final(client, ids, timeout=5)
        for task_id in stuck:
            assert after[task_id] == views[task_id]  # not overwritten by the stale copy
    assert writes.more_than_once() == {}
