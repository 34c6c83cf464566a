"""Locust load test of inferq: users of model_a and of model_b, each in two flows.

- poll: ``POST /predict/{model}`` (202), then ``GET /tasks/{id}?wait=S`` until the task is final.
- wait: ``POST /predict/{model}?wait=S``, which answers 200 with the final task if it ends
  within S seconds (else 202, and the flow goes on polling as above).

Besides Locust's entries for the HTTP requests (the GETs share the name ``/tasks/[id]``), each
prediction is one entry of type ``PREDICT`` named after its model and flow ("model_b (wait)"),
timed from the POST to the final result. It fails when a request fails, when the task ends
``failed`` or ``expired`` or is not final after its deadline, or when the result is wrong
(model_a's echo; model_b's label for a real digit, see `load_testing.samples`).

Run from the repository root: ``make loadtest``, or e.g. ``locust -f load_testing/locustfile.py
--headless -u 20 -r 10 -t 30s``. The ``INFERQ_LOAD_*`` variables (load_testing/README.md) set
the mix of models and flows, the waits and the think time; in a distributed run, set them alike
on the master and on every worker.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment
from locust.runners import MasterRunner

from load_testing.samples import JSON, Digits, Sample, WrongResult, model_a_sample

FINAL = frozenset({"succeeded", "failed", "expired"})


def env_number(name: str, default: float, *, most: float = float("inf")) -> float:
    """A non-negative number from the environment, refusing a bad one by name."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= most:
        raise SystemExit(f"{name} must be a number in 0..{most}, got {raw!r}")
    return value


MODEL_A_WEIGHT = int(env_number("INFERQ_LOAD_MODEL_A_WEIGHT", 1))
MODEL_B_WEIGHT = int(env_number("INFERQ_LOAD_MODEL_B_WEIGHT", 1))
POLL_WEIGHT = int(env_number("INFERQ_LOAD_POLL_WEIGHT", 1))
WAIT_WEIGHT = int(env_number("INFERQ_LOAD_WAIT_WEIGHT", 1))
WAIT_S = env_number("INFERQ_LOAD_WAIT_S", 10, most=30)  # the gateway's longest wait is 30 s
TIMEOUT_S = env_number("INFERQ_LOAD_TIMEOUT_S", 30)
THINK_S = env_number("INFERQ_LOAD_THINK_S", 0.5)
if POLL_WEIGHT + WAIT_WEIGHT == 0 or MODEL_A_WEIGHT + MODEL_B_WEIGHT == 0:
    raise SystemExit("at least one flow and one model need a weight above 0")
if WAIT_S == 0 or TIMEOUT_S == 0:
    raise SystemExit("INFERQ_LOAD_WAIT_S and INFERQ_LOAD_TIMEOUT_S must be above 0")


class PredictionFailed(Exception):
    """A prediction that did not end ``succeeded``: the request or the task failed."""


class PredictUser(FastHttpUser):
    """One client of one model: picks a flow, sends a sample, checks the final result."""

    abstract = True
    host = "http://127.0.0.1:8000"
    wait_time = between(0.5 * THINK_S, 1.5 * THINK_S)
    # A long-poll holds its request up to WAIT_S; give the connection a margin past it.
    network_timeout = WAIT_S + 30
    connection_timeout = 10.0
    model = ""

    def on_start(self) -> None:
        self.rng = random.Random()

    def sample(self) -> Sample:
        raise NotImplementedError

    @task(POLL_WEIGHT)
    def poll_flow(self) -> None:
        self.predict("poll")

    @task(WAIT_WEIGHT)
    def wait_flow(self) -> None:
        self.predict("wait")

    def predict(self, flow: str) -> None:
        """One prediction, POST to final result, reported as a PREDICT entry."""
        sample = self.sample()
        start_time, start = time.time(), time.perf_counter()
        view: JSON = {}
        length = 0
        exception: Exception | None = None
        try:
            view, length = self.submit(sample.body, wait=flow == "wait")
            while view.get("status") not in FINAL:
                if time.perf_counter() - start > TIMEOUT_S:
                    raise PredictionFailed(f"still {view.get('status')} after {TIMEOUT_S:g} s")
                view, length = self.call(
                    "GET", f"/tasks/{view['task_id']}?wait={WAIT_S:g}", name="/tasks/[id]"
                )
            if view["status"] != "succeeded":
                error = view.get("error") or {}
                raise PredictionFailed(
                    f"task {view['status']}: {error.get('type')}: {error.get('message')}"
                )
            sample.check(view.get("result") or {})
        except (PredictionFailed, WrongResult) as error:
            exception = error
        self.environment.events.request.fire(
            request_type="PREDICT",
            name=f"{self.model} ({flow})",
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            response=None,
            context=self.context(),
            exception=exception,
            start_time=start_time,
            url=None,
        )

    def submit(self, body: JSON, *, wait: bool) -> tuple[JSON, int]:
        url = f"/predict/{self.model}?timeout={TIMEOUT_S:g}"
        name = f"/predict/{self.model}"
        if wait:
            url += f"&wait={WAIT_S:g}"
            name += f"?wait={WAIT_S:g}"
        return self.call("POST", url, name=name, body=body)

    def call(
        self, method: str, url: str, *, name: str, body: JSON | None = None
    ) -> tuple[JSON, int]:
        """One request whose answer must be a task (200 or 202); else it fails, and so does
        the prediction."""
        response: ResponseContextManager
        with self.client.request(
            method, url, name=name, json=body, catch_response=True
        ) as response:
            problem = ""
            view: Any = None
            if response.status_code not in (200, 202):
                problem = f"answered {response.status_code}: {describe_error(response)}"
            else:
                try:
                    view = response.json()
                except ValueError:
                    view = None
                if not isinstance(view, dict) or "task_id" not in view:
                    problem = f"answered {response.status_code} without a task: {response.text!r}"
            if problem:
                response.failure(problem)
                raise PredictionFailed(f"{method} {name} {problem}")
            response.success()
        return view, len(response.content or b"")


def describe_error(response: ResponseContextManager) -> str:
    """The gateway's error message, or the connection error, in one line."""
    if not response.status_code:  # no answer: the connection failed
        return repr(getattr(response, "error", None))
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return repr((response.text or "")[:200])


class ModelAUser(PredictUser):
    """Echo requests with a random token each."""

    weight = MODEL_A_WEIGHT
    model = "model_a"

    def sample(self) -> Sample:
        return model_a_sample(self.rng)


class ModelBUser(PredictUser):
    """Real 8x8 digits; the label must be the digit's."""

    weight = MODEL_B_WEIGHT
    model = "model_b"
    digits: Digits | None = None  # set by load_digits in each process that runs users

    def sample(self) -> Sample:
        if self.digits is None:
            raise RuntimeError("the digits were not loaded: Locust's init event did not run")
        return self.digits.sample(self.rng)


@events.init.add_listener
def load_digits(environment: Environment, **_kwargs: Any) -> None:
    """Loads the digits once per process that runs users: after Locust's ``--processes``
    fork, which ONNX Runtime (used to pick the digits) must not cross."""
    if not isinstance(environment.runner, MasterRunner):
        ModelBUser.digits = Digits()
