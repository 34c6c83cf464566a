"""Recent end-to-end latency as this gateway saw it, for ``GET /stats`` and the dashboard.

The source is the gateway's own view: each task whose final state a route returned to a
client (``POST /predict?wait=``, ``GET /tasks/{id}``) is recorded once, with its latency
``finished_at - created_at`` (both stamped in the task record). Tasks nobody fetched, or fetched
through another gateway process, are not counted. Memory is bounded per model by count and age.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, NamedTuple

from inferq.tasks.state import TaskState, TaskStatus, now_ms

WINDOW_S = 60.0
MAX_SAMPLES = 10_000  # per model; beyond this many tasks a minute, the oldest drop out


class Sample(NamedTuple):  # a tuple: one is made per answered task
    task_id: str
    finished_at_ms: int
    latency_ms: int
    succeeded: bool


def percentile(sorted_values: list[int], fraction: float) -> int:
    """Nearest-rank percentile of a non-empty sorted list."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


class RecentLatency:
    """Per model, the tasks finished in the last ``window_s`` seconds (at most ``max_samples``)."""

    def __init__(self, window_s: float = WINDOW_S, max_samples: int = MAX_SAMPLES) -> None:
        self.window_s = window_s
        self.max_samples = max_samples
        self._samples: dict[str, deque[Sample]] = {}
        self._seen: set[str] = set()  # the task ids in _samples, so a re-fetch counts once
        self._started_ms = now_ms()

    def record(self, state: TaskState) -> None:
        """Count a task the gateway is returning, once, if it is final and finished recently."""
        if not state.status.is_final or not state.finished_at_ms or not state.created_at_ms:
            return
        now = now_ms()
        if state.task_id in self._seen or now - state.finished_at_ms > self.window_s * 1000:
            return
        samples = self._samples.setdefault(state.model, deque())
        self._prune(samples, now)
        if len(samples) >= self.max_samples:
            self._seen.discard(samples.popleft().task_id)
        samples.append(
            Sample(
                task_id=state.task_id,
                finished_at_ms=state.finished_at_ms,
                latency_ms=max(0, state.finished_at_ms - state.created_at_ms),
                succeeded=state.status is TaskStatus.SUCCEEDED,
            )
        )
        self._seen.add(state.task_id)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per model: tasks finished in the window, throughput, and latency percentiles (ms)
        of the succeeded ones (None when there are none)."""
        now = now_ms()
        # Throughput over the window, or over the gateway's uptime while that is shorter.
        span_s = max(1.0, min(self.window_s, (now - self._started_ms) / 1000))
        stats = {}
        for model, samples in self._samples.items():
            self._prune(samples, now)
            recent = [s for s in samples if now - s.finished_at_ms <= self.window_s * 1000]
            latencies = sorted(s.latency_ms for s in recent if s.succeeded)
            stats[model] = {
                "finished": len(recent),
                "failed": sum(not s.succeeded for s in recent),  # failed or expired
                "throughput_per_s": round(len(recent) / span_s, 3),
                "p50_ms": percentile(latencies, 0.50) if latencies else None,
                "p90_ms": percentile(latencies, 0.90) if latencies else None,
                "p99_ms": percentile(latencies, 0.99) if latencies else None,
            }
        return stats

    def _prune(self, samples: deque[Sample], now: int) -> None:
        # Samples arrive roughly in finishing order; one that is out of order is skipped by
        # snapshot() and leaves with the samples before it.
        while samples and now - samples[0].finished_at_ms > self.window_s * 1000:
            self._seen.discard(samples.popleft().task_id)
