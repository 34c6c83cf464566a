"""Contract 4: a task past its deadline (``?timeout=S``) ends expired, visible to its poller,
and no worker runs it — whether it waited in the broker's queue (the broker dead-letters it at
its TTL) or in a busy worker's prefetch (the worker skips it)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.probes import submit, view, wait_final
from tests.stack import Stack

BUSY_S = 3.0


@pytest.mark.parametrize(
    ("prefetch", "stored_by_s"),
    # In the queue, the broker dead-letters the task at its deadline. In the prefetch of a busy
    # worker, the worker stores the expiry when it gets to it, after its current task.
    [(1, 0.5), (4, BUSY_S)],
    ids=["waiting-in-the-queue", "waiting-in-the-worker-prefetch"],
)
def test_a_task_past_its_deadline_ends_expired_and_never_runs(
    stack: Stack, prefetch: int, stored_by_s: float
) -> None:
    stack.start_gateway()
    stack.start_worker("sleep", INFERQ_PREFETCH=str(prefetch))
    stack.wait_live("sleep")
    with httpx.Client(base_url=stack.url, timeout=15) as client:
        busy = submit(client, "sleep", {"ms": int(BUSY_S * 1000)})  # the only worker is busy
        late = submit(client, "sleep", {"ms": 1}, timeout=0.5)
        posted = time.monotonic()

        task = client.get(f"/tasks/{late}", params={"wait": 10}).json()
        waited = time.monotonic() - posted
        assert task["status"] == "expired", task
        assert task["error"]["type"] == "DeadlineExceeded"
        assert task["attempts"] == 0 and task["started_at"] is None
        # The long-poll returned because the expiry was stored (finished_at), not because the
        # poll ran out.
        assert task["finished_at"] is not None, task
        assert waited < stored_by_s + 2.5, waited

        # Once free, the worker goes past the expired task without running it.
        after = submit(client, "sleep", {"ms": 1})
        views = wait_final(client, [busy, after], timeout=20)
        assert views[busy]["status"] == views[after]["status"] == "succeeded"
        task = view(client, late)
        assert task["status"] == "expired"
        assert task["attempts"] == 0 and task["started_at"] is None
