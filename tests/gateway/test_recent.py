"""RecentLatency: what GET /stats reports from the task views the gateway returned."""

from __future__ import annotations

from api_service.core.recent import RecentLatency
from inferq.tasks.state import TaskState, TaskStatus, now_ms


def task(
    task_id: str,
    latency_ms: int,
    status: TaskStatus = TaskStatus.SUCCEEDED,
    ago_ms: int = 0,
    model: str = "m",
) -> TaskState:
    finished = now_ms() - ago_ms
    return TaskState(
        task_id=task_id,
        model=model,
        status=status,
        created_at_ms=finished - latency_ms,
        deadline_ms=0,
        started_at_ms=None,
        finished_at_ms=None if status is TaskStatus.RUNNING else finished,
        worker_id=None,
        attempts=1,
        result=None,
        error_type=None,
        error_message=None,
    )


def test_percentiles_of_succeeded_tasks_each_counted_once() -> None:
    recent = RecentLatency()
    for i in range(1, 101):
        recent.record(task(f"t{i}", latency_ms=i))
    recent.record(task("t100", latency_ms=100))  # fetched again: not counted again
    recent.record(task("slow-failure", latency_ms=9999, status=TaskStatus.FAILED))
    recent.record(task("pending", latency_ms=5, status=TaskStatus.RUNNING))

    stats = recent.snapshot()["m"]

    assert (stats["p50_ms"], stats["p90_ms"], stats["p99_ms"]) == (50, 90, 99)
    assert stats["finished"] == 101 and stats["failed"] == 1


def test_only_the_window_counts_and_memory_is_bounded() -> None:
    recent = RecentLatency(window_s=60, max_samples=10)
    recent.record(task("old", latency_ms=1, ago_ms=61_000))
    assert recent.snapshot() == {}
    for i in range(25):
        recent.record(task(f"t{i}", latency_ms=i))
    assert recent.snapshot()["m"]["finished"] == 10
    assert recent.snapshot()["m"]["p50_ms"] == 19  # the 10 newest: 15..24
