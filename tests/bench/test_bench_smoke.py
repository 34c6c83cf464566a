"""The benchmark harness end to end on tiny runs: the systems start, every answer is checked,
and the JSON and the plots are written (figures are not asserted: see STYLE.md)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aio_pika
import pytest

from inferq.names import Names
from inferq.redis_client import connect_redis
from inferq.settings import CommonSettings
from load_testing.bench.backlog import BacklogConfig, run_backlog
from load_testing.bench.compare import CompareConfig, run_compare
from load_testing.bench.floors import FloorsConfig, run_floors
from load_testing.bench.runner import BenchConfig, run_bench
from load_testing.bench.scaleout import ScaleoutConfig, run_scaleout
from load_testing.bench.stack import ROOT

pytestmark = pytest.mark.slow


def test_a_tiny_benchmark_writes_every_row_and_the_plot(tmp_path: Path) -> None:
    config = BenchConfig(clients=[1], modes=["wait"], duration_s=1.5, warmup_s=0.5, out=tmp_path)

    run_bench(config, say=lambda _: None)

    result = json.loads((tmp_path / "bench.json").read_text())
    rows = {(r["system"], r["mode"], r["clients"]): r for r in result["rows"]}
    assert set(rows) == {("baseline", "baseline", 1), ("inferq", "wait", 1)}
    for row in rows.values():
        assert row["throughput_rps"] > 0 and row["completed"] > 0
        assert row["errors"] == 0, row["error_kinds"]
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert rows[("inferq", "wait", 1)]["p50_ratio"] > 0
    assert set(rows[("inferq", "wait", 1)]["rss_mib"]) >= {"gateway", "worker-0"}
    waits = rows[("inferq", "wait", 1)]["runqueue_wait_ms_per_request"]
    assert set(waits) >= {"gateway", "worker-0", "loadgen"}
    assert all(wait >= 0 for wait in waits.values())
    assert [t["metric"] for t in result["targets"]] == ["p50_ratio"]
    assert result["machine"]["cores"] >= 1
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_tiny_scale_out_run_measures_each_worker_count(tmp_path: Path) -> None:
    config = ScaleoutConfig(workers=[1, 2], duration_s=1.0, warmup_s=0.5, out=tmp_path)

    run_scaleout(config, say=lambda _: None)

    result = json.loads((tmp_path / "scaleout.json").read_text())
    rows = {r["workers"]: r for r in result["rows"]}
    assert set(rows) == {1, 2}
    for n, row in rows.items():
        assert row["clients"] == 4 * n
        assert row["completed"] > 0 and row["errors"] == 0, row["error_kinds"]
        assert {f"worker-{i}" for i in range(n)} <= set(row["rss_mib"])
    assert rows[1]["efficiency"] == 1.0
    assert rows[2]["efficiency"] == rows[2]["throughput_rps"] / (2 * rows[1]["throughput_rps"])
    assert [(t["workers"], t["target"]) for t in result["targets"]] == [(2, ">= 0.9")]
    assert (tmp_path / "scaleout.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_small_backlog_is_queued_sampled_read_back_and_dropped(tmp_path: Path) -> None:
    config = BacklogConfig(backlog=2_000, warmup=20, settle_s=1.0, time_limit_s=60, out=tmp_path)

    run_backlog(config, say=lambda _: None)

    result = json.loads((tmp_path / "backlog.json").read_text())
    assert result["submission"]["accepted"] == 2_000
    assert result["submission"]["errors"] == {} and result["warmup_errors"] == 0
    # The worker sleeps 50 ms a task: nearly all of them were still queued at some sample.
    assert result["tasks_waiting_peak"] >= 1_000
    assert 0 < result["queue_depth_peak"] <= 2_000  # messages: one task or more each
    assert set(result["read_back"]) <= {"queued", "running", "succeeded"}
    assert sum(result["read_back"].values()) >= 100
    for name in ("gateway", "worker-0"):
        rss = result["rss_mib"][name]
        assert 0 < rss["before"] <= rss["peak"]
    assert [t["process"] for t in result["targets"]] == ["gateway", "worker-0"]
    assert _keys_left(result["namespace"]) == []
    assert (tmp_path / "backlog.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _keys_left(namespace: str) -> list[bytes]:
    async def scan() -> list[bytes]:
        redis = connect_redis(CommonSettings().redis_url)
        try:
            return [key async for key in redis.scan_iter(match=Names(namespace).key_pattern)]
        finally:
            await redis.aclose()

    return asyncio.run(scan())


def test_the_floors_measure_each_part_and_leave_no_queue(tmp_path: Path) -> None:
    config = FloorsConfig(out=tmp_path, rounds=50)

    run_floors(config, say=lambda _: None)

    result = json.loads((tmp_path / "floors.json").read_text())
    parts = [floor["part"] for floor in result["floors"]]
    assert parts == ["loopback"] + ["rabbitmq"] * 3 + ["redis"] * 2 + ["wake"] * 4
    for floor in result["floors"]:
        assert 0 < floor["p50_ms"] <= floor["p90_ms"], floor
    assert asyncio.run(_queue_exists(Names(config.namespace).model_queue("floors"))) is False


async def _queue_exists(name: str) -> bool:
    connection = await aio_pika.connect(CommonSettings().amqp_url)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return False
        return True


def test_a_tiny_comparison_measures_both_checkouts_and_the_baseline_in_turns(
    tmp_path: Path,
) -> None:
    config = CompareConfig(old=ROOT, clients=1, rounds=2, window_s=0.5, warmup_s=0.2, out=tmp_path)

    run_compare(config, say=lambda _: None)

    result = json.loads((tmp_path / "compare.json").read_text())
    assert [sorted(r) for r in result["rounds"]] == [["baseline", "new", "old"]] * 2
    assert result["summary"]["errors"] == 0
    for name in ("baseline", "old", "new"):
        assert result["summary"][name]["throughput_rps"] > 0
    assert len(result["summary"]["new_over_old"]["p50_ms"]) == 2
