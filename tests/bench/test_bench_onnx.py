"""``bench onnx`` end to end on a tiny run: model_b and the generic worker of digits.onnx
measured in turns behind one gateway, every answer checked, and an upload followed to its
first prediction through the model host (figures are not asserted: see STYLE.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from load_testing.bench.onnx import OnnxConfig, format_report, run_onnx

pytestmark = pytest.mark.slow


def test_a_tiny_onnx_run_measures_both_in_turns_and_an_upload_to_its_prediction(
    tmp_path: Path,
) -> None:
    config = OnnxConfig(
        clients=2, rounds=2, window_s=0.5, warmup_s=0.2, uploads=1, host_poll_s=0.2, out=tmp_path
    )

    run_onnx(config, say=lambda _: None)

    result = json.loads((tmp_path / "onnx.json").read_text())
    rounds = result["rounds"]
    assert len(rounds) == 2
    for measured in rounds:
        assert sorted(measured) == ["model_b", "onnx"]
        assert measured["model_b"]["model"] == "model_b"
        assert measured["onnx"]["model"] == "digits@1"  # the first upload of a fresh catalog
        for row in measured.values():
            assert row["completed"] > 0 and row["errors"] == 0, row["error_kinds"]
            assert 0 < row["p50_ms"] <= row["p99_ms"]
            assert set(row["cpu_ms_per_request"]) >= {"gateway", "worker-b", "worker-onnx"}
    summary = result["summary"]
    assert summary["errors"] == 0
    ratios = summary["ratios"]
    assert len(ratios) == 2 and summary["ratio_range"] == [min(ratios), max(ratios)]
    measured_ratios = [r["onnx"]["throughput_rps"] / r["model_b"]["throughput_rps"] for r in rounds]
    assert ratios == measured_ratios
    [upload] = result["uploads"]
    assert upload["version"] == 2
    parts = ("upload_s", "deploy_call_s", "deploy_to_live_s", "live_to_prediction_s")
    assert all(upload[part] >= 0 for part in parts)
    assert upload["total_s"] == pytest.approx(sum(upload[part] for part in parts))
    assert result["upload_summary"]["total_s"] == upload["total_s"]
    assert [t["metric"] for t in result["targets"]] == ["throughput_ratio"]
    assert "onnx/model_b throughput" in format_report(result)
