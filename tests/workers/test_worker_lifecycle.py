"""Workers joining and leaving: models appear without a gateway restart, and disappear when
their last worker dies or drains."""

from __future__ import annotations

import concurrent.futures
import signal
import time
from pathlib import Path

import httpx

from inferq.settings import GatewaySettings
from tests.stack import Stack, wait_until


def test_a_new_model_is_served_without_restarting_the_gateway(stack: Stack) -> None:
    stack.start_gateway()
    before = httpx.post(f"{stack.url}/predict/word_count", json={"text": "a b a"})
    assert before.status_code == 404

    stack.start_worker("examples.word_count:WordCountModel")
    stack.wait_live("word_count")
    response = httpx.post(
        f"{stack.url}/predict/word_count",
        params={"wait": 10},
        json={"text": "To be or not to be"},
        timeout=15,
    )
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {
        "words": 6,
        "counts": {"to": 2, "be": 2, "or": 1, "not": 1},
    }


def test_killed_last_worker_makes_the_model_503_within_the_heartbeat_expiry(stack: Stack) -> None:
    stack.start_gateway()
    worker = stack.start_worker("model_a")
    stack.wait_live("model_a")
    worker.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()

    def unavailable() -> bool:
        return httpx.post(f"{stack.url}/predict/model_a", json={"data": "x"}).status_code == 503

    # The defaults: the heartbeat expiry (2 s x 3) and the gateway's registry cache (1 s),
    # plus slack for a busy machine.
    settings = GatewaySettings.model_fields
    expiry = settings["heartbeat_interval_s"].default * settings["heartbeat_misses"].default
    bound = expiry + settings["registry_cache_s"].default + 2.0
    wait_until(unavailable, bound + 5, "503")
    assert time.monotonic() - killed_at < bound
    response = httpx.post(f"{stack.url}/predict/model_a", json={"data": "x"})
    assert response.json()["error"]["type"] == "ModelUnavailable"
    assert int(response.headers["Retry-After"]) >= 1


def test_sigterm_drains_and_leaves_the_registry_at_once(stack: Stack) -> None:
    stack.start_gateway()
    worker = stack.start_worker("sleep", INFERQ_HEARTBEAT_INTERVAL_S="30")
    stack.wait_live("sleep")
    task = httpx.post(f"{stack.url}/predict/sleep", json={"ms": 1500}).json()
    wait_until(
        lambda: httpx.get(f"{stack.url}/tasks/{task['task_id']}").json()["status"] == "running",
        10,
        "task running",
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    # The in-flight task finished during the drain, not dropped.
    assert httpx.get(f"{stack.url}/tasks/{task['task_id']}").json()["status"] == "succeeded"
    # Deregistered on exit: with a 90 s heartbeat expiry, only that explains it being gone now.
    time.sleep(0.3)
    model = httpx.get(f"{stack.url}/models/sleep").json()
    assert model["live_workers"] == 0


def test_sigterm_lets_the_gateway_answer_its_in_flight_requests(stack: Stack) -> None:
    stack.start_gateway()
    stack.start_worker("sleep")
    stack.wait_live("sleep")
    gateway = stack.processes[0]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            httpx.post,
            f"{stack.url}/predict/sleep",
            params={"wait": 10},
            json={"ms": 1000},
            timeout=15,
        )
        time.sleep(0.3)  # the request is in, waiting for its result
        gateway.send_signal(signal.SIGTERM)
        response = held.result()
    assert response.status_code == 200
    assert response.json()["result"] == {"slept_ms": 1000}
    # uvicorn re-raises SIGTERM once it has shut down gracefully, so it "dies" by it.
    assert gateway.wait(15) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in stack.logs()


def test_a_liveness_file_that_cannot_be_written_does_not_stop_the_heartbeats(
    stack: Stack, tmp_path: Path
) -> None:
    """The liveness probe fails; the worker stays in the registry and keeps serving (the
    failed write used to end the heartbeat loop: the worker vanished while it consumed)."""
    stack.start_gateway()
    missing = tmp_path / "no-such-folder"
    worker = stack.start_worker(
        "model_a", INFERQ_HEALTH_DIR=str(missing), INFERQ_HEARTBEAT_INTERVAL_S="0.3"
    )
    stack.wait_live("model_a", watch=[worker])
    time.sleep(2.0)  # more than twice the heartbeat expiry (0.9 s)
    assert httpx.get(f"{stack.url}/models/model_a").json()["live_workers"] == 1
    answer = httpx.post(f"{stack.url}/predict/model_a?wait=5", json={"data": "x"}).json()
    assert answer["status"] == "succeeded"
    assert "cannot touch the liveness file" in stack.log_of(worker)


def test_a_model_that_scales_to_zero_takes_tasks_with_no_worker_until_one_starts(
    stack: Stack,
) -> None:
    """sleep allows a cold start (`Model.scale_to_zero`): with its last worker gone, a task
    is accepted (202) and waits in the queue; the next worker runs it. model_a does not: 503."""
    stack.start_gateway()
    workers = [stack.start_worker("sleep"), stack.start_worker("model_a")]
    stack.wait_live("sleep")
    stack.wait_live("model_a")
    for worker in workers:
        worker.send_signal(signal.SIGTERM)  # drains and leaves the registry at once
        worker.wait(30)
    wait_until(lambda: stack.live_workers("sleep") == 0, 10, "no sleep worker")
    wait_until(
        lambda: httpx.post(f"{stack.url}/predict/model_a", json={"data": "x"}).status_code == 503,
        10,
        "model_a refused",
    )
    accepted = httpx.post(f"{stack.url}/predict/sleep?wait=1", json={"ms": 1}, timeout=10)
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["task_id"]
    assert httpx.get(f"{stack.url}/tasks/{task_id}").json()["status"] == "queued"
    stack.start_worker("sleep")
    done = httpx.get(f"{stack.url}/tasks/{task_id}?wait=30", timeout=40).json()
    assert done["status"] == "succeeded" and done["result"] == {"slept_ms": 1}
