"""``bench doors`` end to end on a tiny run: model_b through the native ``?wait=`` path, OIP
REST and gRPC ModelInfer in turns behind one gateway, every answer checked, and a small tensor
through the doubler graph by each door (figures are not asserted: see STYLE.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from load_testing.bench.doors import (
    BIG_DOORS,
    DOORS,
    DoorsConfig,
    format_report,
    format_targets,
    run_doors,
)

pytestmark = pytest.mark.slow


def test_a_tiny_doors_run_measures_each_door_in_turns_and_a_tensor_through_each(
    tmp_path: Path,
) -> None:
    config = DoorsConfig(
        clients=[1, 2],
        rounds=2,
        window_s=0.4,
        warmup_s=0.2,
        grpc_channels=2,
        big_width=1000,
        big_repeats=1,
        out=tmp_path,
    )

    run_doors(config, say=lambda _: None)

    result = json.loads((tmp_path / "doors.json").read_text())
    rounds = result["rounds"]
    assert len(rounds) == 2
    for measured in rounds:
        assert sorted(measured) == sorted(f"{c}/{d}" for c in (1, 2) for d in DOORS)
        for key, row in measured.items():
            assert key == f"{row['clients']}/{row['door']}"
            assert row["completed"] > 0 and row["errors"] == 0, row["error_kinds"]
            assert 0 < row["p50_ms"] <= row["p99_ms"]
            assert set(row["cpu_ms_per_request"]) >= {"gateway", "worker", "loadgen"}
            assert row["mean_batch_size"] >= 1  # the worker ran batches in the window
            assert row["longest_in_flight_ms"] >= 0
    summary = result["summary"]
    assert summary["errors"] == 0
    for clients in ("1", "2"):
        for door in ("rest", "grpc"):
            ratios = summary[clients][door]["ratios"]
            measured_ratios = [
                r[f"{clients}/{door}"]["throughput_rps"] / r[f"{clients}/native"]["throughput_rps"]
                for r in rounds
            ]
            assert ratios == measured_ratios
            assert summary[clients][door]["ratio_range"] == [min(ratios), max(ratios)]
    assert [(t["door"], t["clients"]) for t in result["targets"]] == [
        ("rest", 1),
        ("grpc", 1),
        ("rest", 2),
        ("grpc", 2),
    ]
    big = result["big"]
    assert big["width"] == 1000 and big["errors"] == {}
    assert sorted(big["times_s"]) == sorted(BIG_DOORS)
    assert all(len(times) == 1 and times[0] > 0 for times in big["times_s"].values())
    assert big["over_rest_json"]["rest_json"] == 1.0
    assert "rest_binary" in format_report(result)
    assert "grpc/native throughput, 2 client(s)" in format_targets(result["targets"])
