"""``bench doors`` end to end on a tiny run: model_b through the native ``?wait=`` path, OIP
REST and gRPC ModelInfer in turns behind one gateway, every answer checked, and a small tensor
through the doubler graph by each door (figures are not asserted: see STYLE.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from load_testing.bench.doors import (
    BIG_DOORS,
    DOORS,
    FLOOR,
    HTTP_FLOOR,
    format_report,
    format_targets,
    server_cpu_ms,
)
from load_testing.processes import ROOT

pytestmark = pytest.mark.slow


def test_a_tiny_doors_run_measures_each_door_in_turns_and_a_tensor_through_each(
    tmp_path: Path,
) -> None:
    # In a process of its own: its gRPC client loads our `inference` protos, which cannot
    # live in one process with tritonclient's (the suite's gRPC tests load those).
    command = [
        *("--clients", "1,2", "--rounds", "2", "--window", "0.4", "--warmup", "0.2"),
        *("--grpc-channels", "2", "--big-width", "1000", "--big-repeats", "1"),
        *("--out", str(tmp_path)),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "load_testing.bench", "doors", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads((tmp_path / "doors.json").read_text())
    rounds = result["rounds"]
    assert len(rounds) == 2
    for measured in rounds:
        assert sorted(measured) == sorted(
            f"{c}/{d}" for c in (1, 2) for d in (*DOORS, FLOOR, HTTP_FLOOR)
        )
        for key, row in measured.items():
            assert key == f"{row['clients']}/{row['door']}"
            assert row["completed"] > 0 and row["errors"] == 0, row["error_kinds"]
            if row["door"] == FLOOR:  # no queue behind it: only its own process works
                assert row["cpu_ms_per_request"]["floor"] > 0
                continue
            if row["door"] == HTTP_FLOOR:
                assert row["cpu_ms_per_request"][HTTP_FLOOR] > 0
                continue
            assert 0 < row["p50_ms"] <= row["p99_ms"]
            assert set(row["cpu_ms_per_request"]) >= {"gateway", "worker", "loadgen"}
            assert server_cpu_ms(row) > row["cpu_ms_per_request"]["gateway"]
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
            assert summary[clients][door]["server_cpu_ratio"] > 0
        assert summary[clients][FLOOR]["throughput_rps"] > 0
        assert summary[clients][HTTP_FLOOR]["throughput_rps"] > 0
        # Trading HTTP's floor for gRPC's keeps a positive CPU per request.
        ceiling = summary[clients]["grpc_ceiling"]
        assert ceiling["all"] > 0 and ceiling["server"] > 0 and ceiling["latency"] > 0
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
    assert "gRPC floor (canned answers), 2 client(s)" in format_report(result)
    assert "HTTP floor (canned answers), 2 client(s)" in format_report(result)
    assert "grpc/native at most" in format_report(result)
    assert "grpc/native throughput, 2 client(s)" in format_targets(result["targets"])
