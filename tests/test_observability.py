"""What an operator sees: trace ids followed into worker logs, metrics, health checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from inferq.names import Names
from tests.stack import ROOT, Stack, free_port, wait_until

TRACE_ID = os.urandom(16).hex()
TRACEPARENT = f"00-{TRACE_ID}-{os.urandom(8).hex()}-01"


def _log_lines(stack: Stack, prefix: str) -> list[dict[str, object]]:
    lines = []
    for path in stack.log_dir.glob(f"{prefix}-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
    return lines


def test_a_trace_id_is_followed_from_the_client_to_the_worker_log(stack: Stack) -> None:
    stack.start_gateway()
    # The defaults: every task, succeeded or not, has its INFO line.
    stack.start_worker("model_b")
    stack.wait_live("model_b")
    task_ids = []
    for pixels in ([0.5] * 64, [0.5] * 63):
        response = httpx.post(
            f"{stack.url}/predict/model_b",
            params={"wait": 10},
            json={"pixels": pixels},
            headers={"traceparent": TRACEPARENT},
        )
        assert response.status_code == 200
        assert response.headers["traceparent"].split("-")[1] == TRACE_ID
        task_ids.append(response.json()["task_id"])

    def line_of(task_id: str) -> dict[str, object] | None:
        return next((x for x in _log_lines(stack, "model_b") if x.get("task_id") == task_id), None)

    wait_until(lambda: all(line_of(t) for t in task_ids), 5, "the worker's log lines")
    succeeded, failed = (line_of(t) for t in task_ids)
    assert succeeded and failed
    assert succeeded["trace_id"] == failed["trace_id"] == TRACE_ID
    assert str(succeeded["message"]).startswith("task succeeded in ")
    assert succeeded["level"] == "info" and succeeded["status"] == "succeeded"
    assert str(failed["message"]).startswith("task failed in ")
    assert "ValueError: pixels must hold 64" in str(failed["message"])
    assert failed["level"] == "info" and failed["model"] == "model_b"
    assert {"ts", "logger", "span_id"} <= set(succeeded)


def test_gateway_metrics_count_requests_by_model_and_status(shared_stack: Stack) -> None:
    # The gateway is shared: other tests' requests are in its counters too, so the test
    # compares each series before and after its own one request.
    route = {"route": "/predict/{model}", "model": "model_a"}
    queue = {"queue": Names(shared_stack.namespace).model_queue("model_a")}

    def series() -> tuple[float, float, float]:
        return (
            shared_stack.metric("inferq_gateway_requests_total", **route, status="202"),
            shared_stack.metric("inferq_gateway_request_seconds_count", **route),
            shared_stack.metric("inferq_gateway_publish_seconds_count", **queue),
        )

    before = series()
    response = httpx.post(f"{shared_stack.url}/predict/model_a", json={"data": "m"})
    assert response.status_code == 202, response.text
    after = series()
    # One request answered 202, timed once, its task published (and confirmed) once.
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1], (before, after)


def test_worker_metrics_health_check_and_models_view(stack: Stack) -> None:
    port = free_port()
    stack.start_gateway()
    worker = stack.start_worker(
        "model_a", INFERQ_METRICS_PORT=str(port), INFERQ_HEALTH_DIR=str(stack.log_dir)
    )
    stack.wait_live("model_a")
    for i in range(3):
        task = httpx.post(
            f"{stack.url}/predict/model_a", params={"wait": 10}, json={"data": str(i)}
        ).json()
        assert task["status"] == "succeeded"
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'inferq_worker_inference_seconds_count{model="model_a"} 3.0' in metrics
    assert 'inferq_worker_queue_wait_seconds_count{model="model_a"} 3.0' in metrics
    assert 'inferq_worker_results_stored_total{model="model_a",status="succeeded"} 3.0' in metrics

    model = httpx.get(f"{stack.url}/models/model_a").json()
    assert model["consumers"] == 1 and model["queue_depth"] == 0
    assert "throughput_per_s" in model

    def check() -> int:
        env = {**stack.env, "INFERQ_HEALTH_DIR": str(stack.log_dir)}
        command = [sys.executable, "-m", "inferq_cli", "worker", "model_a", "--check"]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True).returncode

    wait_until(lambda: check() == 0, 5, "a healthy check")
    worker.terminate()
    assert worker.wait(15) == 0
    # A worker that stopped cleanly removes its liveness file: unhealthy at once, nothing left.
    assert check() == 1
    assert list(stack.log_dir.glob("*.alive")) == []
