"""The chaos run, small: 200 tasks while a worker is SIGKILLed every second. Nothing lost,
nothing stored twice, every result right; with plain POSTs, and with POST ?wait= short enough
that most tasks are answered 202 (their records made by the wait, not the batcher)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import ROOT


@pytest.mark.parametrize("post_wait", ["0", "0.06"], ids=["post", "post-wait"])
def test_chaos_run_loses_nothing(tmp_path: Path, post_wait: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "load_testing.chaos", "--tasks", "200", "--workers", "3",
         "--kill-every", "1", "--ms", "50", "--rate", "40", "--wait-s", "60", "--json",
         "--post-wait", post_wait, "--log-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert run.returncode in (0, 1), run.stderr[-3000:]
    tally = json.loads(run.stdout.strip().splitlines()[-1])
    assert tally["accepted"] == 200, run.stdout
    assert tally["kills"] >= 3, run.stdout
    assert tally["lost"] == 0, run.stdout
    assert tally["stored_twice"] == 0, run.stdout
    assert tally["wrong_result"] == 0, run.stdout
    assert tally["succeeded"] == 200, run.stdout
    assert run.returncode == 0
