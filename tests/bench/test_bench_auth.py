"""``bench auth`` end to end on a tiny run: the native ``?wait=`` path through a gateway without
authentication, one requiring keys, and a key with limits, in turns, every answer checked
(figures are not asserted: see STYLE.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from load_testing.bench.auth import VARIANTS, format_report, format_targets
from load_testing.processes import ROOT

pytestmark = pytest.mark.slow


def test_a_tiny_auth_run_measures_each_variant_in_turns(tmp_path: Path) -> None:
    command = [
        *("--clients", "1,2", "--rounds", "2", "--window", "0.4", "--warmup", "0.2"),
        *("--out", str(tmp_path)),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "load_testing.bench", "auth", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads((tmp_path / "auth.json").read_text())
    assert len(result["rounds"]) == 2
    for measured in result["rounds"]:
        assert sorted(measured) == sorted(f"{c}/{v}" for c in (1, 2) for v in VARIANTS)
        for key, row in measured.items():
            assert key == f"{row['clients']}/{row['variant']}"
            # Every answer a checked prediction: a refused key would be an error here.
            assert row["completed"] > 0 and row["errors"] == 0, row["error_kinds"]
            gateway = "gateway_off" if row["variant"] == "off" else "gateway"
            assert row["cpu_ms_per_request"][gateway] > 0
    summary = result["summary"]
    assert summary["errors"] == 0
    for clients in ("1", "2"):
        for variant in VARIANTS[1:]:
            ratios = [
                r[f"{clients}/{variant}"]["throughput_rps"] / r[f"{clients}/off"]["throughput_rps"]
                for r in result["rounds"]
            ]
            assert summary[clients][variant]["ratio_range"] == [min(ratios), max(ratios)]
    assert result["targets"] == []  # no 32-client run here: no target to judge
    assert "limited" in format_report(result)
    assert format_targets(result["targets"]) == ""
