"""The chaos run, small: 200 tasks while a worker is SIGKILLed every second. Nothing lost,
nothing stored twice, every result right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.stack import ROOT


def test_chaos_run_loses_nothing(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "load_testing.chaos", "--tasks", "200", "--workers", "3",
         "--kill-every", "1", "--ms", "50", "--rate", "40", "--wait-s", "60", "--json",
         "--log-dir", str(tmp_path)],
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
