"""Issue 19's scenario, one run (`make failover` runs three): 2 gateways and 3 workers of
model_b on a private 3-node RabbitMQ cluster (quorum queues) and a Redis with a replica and
three Sentinels, under closed-loop load with every answer checked, while the node leading the
model queue is SIGKILLed, then the Redis primary, then one gateway's broker connection is
closed by the broker. Nothing accepted is lost or stored twice, every result is right, no
client request hangs, and all three faults land while tasks are still being accepted.

About 1.5 minutes (the three RabbitMQ nodes take ~25 s to start and join)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inferq.redis_client import connect_redis
from inferq.settings import CommonSettings
from load_testing.cluster import missing
from tests.stack import ROOT

pytestmark = pytest.mark.slow


def client_side_missing() -> str:
    """What of the client side the scenario needs is not in this checkout, or ""."""
    lacking = []
    if not hasattr(CommonSettings, "amqp_urls"):
        lacking.append("INFERQ_AMQP_URL as a comma-separated list (CommonSettings.amqp_urls)")
    try:
        connect_redis("redis+sentinel://127.0.0.1:1/none/0")
    except ValueError:
        lacking.append("INFERQ_REDIS_URL=redis+sentinel://... (inferq/redis_client.py)")
    return "; ".join(lacking)


def test_failover_run_loses_nothing(tmp_path: Path) -> None:
    if lacking := missing():
        pytest.skip(f"the failover scenario's servers are not installed: {lacking}")
    if lacking := client_side_missing():
        pytest.skip(f"the failover scenario needs what this checkout lacks: {lacking}")
    run = subprocess.run(
        [sys.executable, "-m", "load_testing.failover", "--runs", "1", "--tasks", "5000",
         "--json", "--log-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-5000:]
    [tally] = json.loads(run.stdout.strip().splitlines()[-1])
    made = [event["what"] for event in tally["events"] if "at_accepted" in event]
    assert made[1:] == [
        "SIGKILL queue leader",
        "SIGKILL Redis primary",
        "close gateway 0's broker connections",
    ], run.stdout
    assert tally["faults_late"] == 0, run.stdout
    assert tally["accepted"] == 5000, run.stdout
    assert tally["lost"] == 0, run.stdout
    assert tally["stored_twice"] == 0, run.stdout
    assert tally["wrong_result"] == 0, run.stdout
    assert tally["succeeded"] == 5000, run.stdout
    assert tally["client_timeouts"] == 0, run.stdout
    assert tally["rejected"] == 0, run.stdout
    by_what = {event["what"]: event for event in tally["events"]}
    assert by_what["SIGKILL Redis primary"]["promoted"], run.stdout
    assert by_what["close gateway 0's broker connections"]["reconnected_to"], run.stdout
    assert run.returncode == 0, run.stdout
