"""The worker's access log: one INFO line per task, so the trace id a client got in the
gateway's answer leads to the worker that ran its task; the log also goes to a rotated file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.stack import Stack, wait_until


def log_lines(log_file: Path) -> list[dict[str, Any]]:
    """Every JSON line of the log file and its rotated predecessors, oldest first."""
    files = sorted(log_file.parent.glob(log_file.name + ".*"), reverse=True) + [log_file]
    return [json.loads(line) for path in files for line in path.read_text().splitlines()]


def trace_id(response: httpx.Response) -> str:
    return response.headers["traceparent"].split("-")[1]


def test_a_succeeded_task_has_an_info_line_found_by_its_trace_id(
    stack: Stack, tmp_path: Path
) -> None:
    log_file = tmp_path / "worker.log"
    stack.start_gateway()
    # Defaults otherwise: INFO level, access log on. A small file size shows the rotation.
    stack.start_worker("model_a", INFERQ_LOG_FILE=str(log_file), INFERQ_LOG_FILE_MAX_BYTES="4000")
    stack.wait_live("model_a")
    answers = [
        httpx.post(
            f"{stack.url}/predict/model_a", params={"wait": 10}, json={"data": f"x{i}"}, timeout=15
        )
        for i in range(20)
    ]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]

    def logged() -> list[dict[str, Any]]:
        wanted = {trace_id(a) for a in answers}
        return [line for line in log_lines(log_file) if line.get("trace_id") in wanted]

    wait_until(lambda: len(logged()) == len(answers), 10, "a line per task")
    first = answers[0].json()
    [line] = [line for line in logged() if line["trace_id"] == trace_id(answers[0])]
    assert line["level"] == "info"
    assert line["task_id"] == first["task_id"]
    assert line["model"] == "model_a"
    assert line["status"] == "succeeded"
    assert line["worker_id"] == first["worker_id"]
    assert line["queue_ms"] >= 0 and line["run_ms"] > 0
    assert line["message"].startswith("task succeeded in ")
    assert list(tmp_path.glob("worker.log.*")), "the log file was never rotated"


def test_the_access_log_can_be_turned_off_and_failures_are_still_logged(
    stack: Stack, tmp_path: Path
) -> None:
    log_file = tmp_path / "worker.log"
    stack.start_gateway()
    stack.start_worker(
        "tests.models.batch_echo:BatchEcho",
        INFERQ_LOG_FILE=str(log_file),
        INFERQ_ACCESS_LOG="false",
        INFERQ_MAX_BATCH_DELAY_MS="0",
    )
    stack.wait_live("batch_echo")
    ok = httpx.post(
        f"{stack.url}/predict/batch_echo", params={"wait": 10}, json={"data": "fine"}, timeout=15
    )
    failed = httpx.post(
        f"{stack.url}/predict/batch_echo", params={"wait": 10}, json={"data": "boom"}, timeout=15
    )
    assert ok.json()["status"] == "succeeded" and failed.json()["status"] == "failed"

    def lines_of(answer: httpx.Response) -> list[dict[str, Any]]:
        return [line for line in log_lines(log_file) if line.get("trace_id") == trace_id(answer)]

    wait_until(lambda: lines_of(failed), 10, "the failed task's line")
    [line] = lines_of(failed)
    assert line["status"] == "failed" and "ValueError: boom" in line["message"]
    assert lines_of(ok) == []
