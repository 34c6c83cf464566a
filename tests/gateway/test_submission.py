"""Submission rules: Idempotency-Key, deadlines, backpressure (429), broker down (503)."""

from __future__ import annotations

import time

import httpx

from tests.stack import Stack, free_port, wait_until


def test_idempotency_key_returns_the_same_task(shared_stack: Stack) -> None:
    url = f"{shared_stack.url}/predict/model_a"
    key = {"Idempotency-Key": f"order-{time.time_ns()}"}
    first = httpx.post(url, json={"data": "once"}, headers=key)
    assert first.status_code == 202
    again = httpx.post(url, json={"data": "once"}, headers=key, params={"wait": 10})
    assert again.json()["task_id"] == first.json()["task_id"]
    assert again.json()["status"] == "succeeded"
    assert again.json()["attempts"] == 1  # ran once, though posted twice

    other_body = httpx.post(url, json={"data": "twice"}, headers=key)
    assert other_body.status_code == 422
    assert "different request body" in other_body.json()["error"]["message"]
    # Keys are per model: the same key on another model is another task.
    other_model = httpx.post(
        f"{shared_stack.url}/predict/model_b", json={"pixels": [0.0] * 64}, headers=key
    )
    assert other_model.status_code == 202
    assert other_model.json()["task_id"] != first.json()["task_id"]


def test_deadline_header_and_query_are_validated(shared_stack: Stack) -> None:
    url = f"{shared_stack.url}/predict/model_a"
    bad = httpx.post(url, json={"data": "x"}, headers={"X-Inferq-Timeout": "soon"})
    assert bad.status_code == 422
    assert "x-inferq-timeout" in bad.json()["error"]["message"].lower()
    assert httpx.post(url, json={"data": "x"}, params={"timeout": -1}).status_code == 422
    ok = httpx.post(url, json={"data": "x"}, headers={"X-Inferq-Timeout": "5"}, params={"wait": 5})
    task = ok.json()
    assert task["status"] == "succeeded"
    deadline_s = (_ms(task["deadline"]) - _ms(task["created_at"])) / 1000
    assert 4.9 <= deadline_s <= 5.1


def _ms(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def test_a_full_queue_answers_429_and_loses_nothing(stack: Stack) -> None:
    stack.env["INFERQ_QUEUE_MAX_LENGTH"] = "5"
    stack.start_gateway()
    stack.start_worker("sleep", INFERQ_PREFETCH="1")
    stack.wait_live("sleep")
    answers = [httpx.post(f"{stack.url}/predict/sleep", json={"ms": 200}) for _ in range(20)]
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {202, 429}, statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["type"] == "QueueFull"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    accepted = [a.json()["task_id"] for a in answers if a.status_code == 202]
    for task_id in accepted:
        task = httpx.get(f"{stack.url}/tasks/{task_id}", params={"wait": 20}, timeout=25).json()
        assert task["status"] == "succeeded", task


def test_gateway_starts_without_the_broker_and_answers_503(stack: Stack) -> None:
    stack.start_worker("model_a")  # registers the model, with the real broker
    dead_port = free_port()
    stack.env["INFERQ_AMQP_URL"] = f"amqp://guest:guest@127.0.0.1:{dead_port}/"
    stack.spawn("gateway", "gateway", "--port", str(port := free_port()))
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _status(f"{url}/healthz") == 200, 30, "gateway up")
    assert httpx.get(f"{url}/readyz").json()["checks"]["broker"] is False
    stack.url = url
    stack.wait_live("model_a")
    started = time.monotonic()
    response = httpx.post(f"{url}/predict/model_a", json={"data": "x"}, timeout=30)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "BrokerUnavailable"
    assert "Retry-After" in response.headers
    assert time.monotonic() - started < 2


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_query_strings_are_read_as_numbers_or_refused_with_their_name(shared_stack: Stack) -> None:
    """``?wait=`` and ``?timeout=``, escaped or not, beside parameters the call ignores; a value
    that is not a number in range is a 422 naming the parameter."""
    predict = f"{shared_stack.url}/predict/model_a"
    body = {"data": "routes"}
    # The gateway is shared: its counters hold other tests' requests too, so the test counts
    # the difference its own requests make.
    series = {"model": "model_a", "route": "/predict/{model}"}

    def counts() -> dict[str, float]:
        return {
            s: shared_stack.metric("inferq_gateway_requests_total", **series, status=s)
            for s in ("200", "422")
        }

    before = counts()
    served = {
        "hot": httpx.post(predict, json=body, params={"wait": "5", "timeout": "60"}),
        "escaped": httpx.post(predict, json=body, params={"wait": "5 "}),  # "5+": unquoted
        "extra": httpx.post(predict, json=body, params={"wait": "5", "other": "1"}),
    }
    for name, answer in served.items():
        assert answer.status_code == 200, (name, answer.text)
        assert answer.json()["result"] == {"reply": "Processed message: routes"}, name
    task_id = served["extra"].json()["task_id"]
    fetched = httpx.get(f"{shared_stack.url}/tasks/{task_id}", params={"wait": "1", "x": "y"})
    assert fetched.json() == served["extra"].json()
    refusals = ({"wait": "soon"}, {"wait": "31"}, {"timeout": "0"}, {"wait": "nan"})
    for params in refusals:
        refused = httpx.post(predict, json=body, params=params)
        assert refused.status_code == 422, (params, refused.text)
        assert refused.json()["error"]["type"] == "InvalidRequest"
        assert list(params)[0] in refused.json()["error"]["message"]
    # Every answer above is one 200 or one 422 of /predict/{model}, model_a, in the metrics.
    counted = {s: n - before[s] for s, n in counts().items()}
    assert counted == {"200": len(served), "422": len(refusals)}, counted


def test_a_waiting_request_answered_202_leaves_a_record_to_poll(stack: Stack) -> None:
    """A request that waits makes the task's queued record only if it answers before the task
    ends; whichever way it answers, the task can be polled from then on."""
    stack.start_gateway()
    stack.start_worker("sleep")
    stack.wait_live("sleep")
    url = f"{stack.url}/predict/sleep"
    # Ends within the wait, which outlasts the waiter's one-second re-read of the hash.
    slow = httpx.post(url, json={"ms": 1500}, params={"wait": 10}, timeout=15)
    assert slow.status_code == 200, slow.text
    done = httpx.get(f"{stack.url}{slow.headers['Location']}").json()
    assert done["status"] == "succeeded" and done["model"] == "sleep"
    assert done["created_at"] <= done["started_at"] <= done["finished_at"] < done["deadline"]
    # Outlasts the wait: 202, and the task is there to poll at once.
    for wait_s in (0.2, 1.5):
        late = httpx.post(url, json={"ms": 2500}, params={"wait": wait_s}, timeout=15)
        assert late.status_code == 202, late.text
        assert late.json()["status"] == "queued"
        polled = httpx.get(f"{stack.url}{late.headers['Location']}")
        assert polled.status_code == 200
        assert polled.json()["status"] in ("queued", "running")
        assert polled.json()["created_at"] and polled.json()["deadline"]
        final = httpx.get(f"{stack.url}{late.headers['Location']}", params={"wait": 10}, timeout=15)
        assert final.json()["status"] == "succeeded"
        assert final.json()["result"] == {"slept_ms": 2500}
