"""The Locust load test: it runs headless against a live stack without a failure, and the
checks it applies to results reject wrong ones (else "no failures" would prove nothing)."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from load_testing.samples import Digits, WrongResult, digit_check, model_a_sample
from tests.stack import Stack

HEADLESS = (
    "--headless --users 4 --spawn-rate 4 --run-time 5s --stop-timeout 10 "
    "--exit-code-on-error 1 --only-summary"
).split()
FLOWS = [f"{model} ({flow})" for model in ("model_a", "model_b") for flow in ("poll", "wait")]


def clean_env() -> dict[str, str]:
    """This environment without the load test's and Locust's own settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("INFERQ_LOAD_", "LOCUST_"))}


@pytest.mark.slow
def test_locustfile_runs_headless_without_failures(
    shared_stack: Stack, tmp_path: Path, root: Path
) -> None:
    prefix = tmp_path / "locust"
    html = tmp_path / "locust.html"
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "load_testing/locustfile.py", *HEADLESS]
        + ["--host", shared_stack.url, "--csv", str(prefix), "--html", str(html)],
        cwd=root,
        env={**clean_env(), "PYTHONPATH": str(root), "INFERQ_LOAD_THINK_S": "0.1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    with open(f"{prefix}_stats.csv", newline="") as stats:
        rows = {row["Name"]: row for row in csv.DictReader(stats) if row["Type"] == "PREDICT"}
    assert sorted(rows) == sorted(FLOWS), result.stderr[-3000:]
    for name in FLOWS:
        assert int(rows[name]["Request Count"]) > 0, name
        assert int(rows[name]["Failure Count"]) == 0, (name, result.stderr[-3000:])
    assert "model_b (wait)" in html.read_text()


def test_model_b_check_takes_the_right_digit_and_rejects_a_wrong_one() -> None:
    digits = Digits()
    assert 0 < digits.left_out < 20 and len(digits.labels) + digits.left_out == 1797
    sample = digits.sample(random.Random(0))
    label = digits.labels[digits.pixels.index(sample.body["pixels"])]
    probabilities = [0.01] * 10
    probabilities[label] = 0.91
    sample.check({"label": label, "probabilities": probabilities})

    with pytest.raises(WrongResult, match=f"label {(label + 1) % 10} for a digit {label}"):
        sample.check({"label": (label + 1) % 10, "probabilities": probabilities})
    with pytest.raises(WrongResult, match="largest probability"):
        digit_check(label)({"label": label, "probabilities": probabilities[::-1]})
    with pytest.raises(WrongResult, match="not 10 numbers"):
        digit_check(label)({"label": label, "probabilities": [1.0]})


def test_model_a_check_rejects_another_tasks_reply() -> None:
    rng = random.Random(0)
    sample, other = model_a_sample(rng), model_a_sample(rng)
    sample.check({"reply": f"Processed message: {sample.body['data']}"})
    with pytest.raises(WrongResult):
        sample.check({"reply": f"Processed message: {other.body['data']}"})
