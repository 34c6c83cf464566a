"""The harness's per-process figures: the run-queue wait read from /proc, and per-request
arithmetic."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from load_testing.bench.measure import per_request_ms
from load_testing.bench.procstat import runqueue_wait_s

BUSY_LOOP = "while True: pass"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_two_busy_processes_on_one_core_each_wait_for_it() -> None:
    core = min(os.sched_getaffinity(0))
    pinned = [
        subprocess.Popen(
            [sys.executable, "-c", BUSY_LOOP],
            preexec_fn=lambda: os.sched_setaffinity(0, {core}),
        )
        for _ in range(2)
    ]
    try:
        time.sleep(0.2)  # started, both runnable from now on
        before = [runqueue_wait_s(p.pid) for p in pinned]
        time.sleep(0.6)
        after = [runqueue_wait_s(p.pid) for p in pinned]
    finally:
        for process in pinned:
            process.kill()
            process.wait()
    # One core for two: each waited about half of the 0.6 s (the bound leaves room for a
    # busy host, where they also wait for other processes, never less).
    for start, end in zip(before, after, strict=True):
        assert start is not None and end is not None
        assert end - start > 0.15


def test_a_process_that_is_gone_has_no_figure() -> None:
    assert runqueue_wait_s(2**22 + 1) is None  # above Linux's largest pid


def test_per_request_ms_skips_what_was_not_read() -> None:
    before = {"gateway": 1.0, "worker-0": 2.0, "redis": None}
    after = {"gateway": 1.5, "worker-0": 2.25, "redis": 3.0}

    assert per_request_ms(before, after, completed=1000) == {"gateway": 0.5, "worker-0": 0.25}
    assert per_request_ms(before, after, completed=0) == {"gateway": None, "worker-0": None}
