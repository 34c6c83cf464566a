"""``inferq predict`` (on `inferq_client`) against the shared gateway: prints the task and
exits 0 only if it succeeded; prints the error and exits 1 otherwise."""

from __future__ import annotations

import argparse
import json

import pytest

from inferq_cli.client import run_predict
from tests.stack import Stack, free_port


def predict(url: str, model: str, body: str, wait: float = 10) -> int:
    return run_predict(argparse.Namespace(url=url, model=model, json=body, wait=wait))


def test_a_prediction_prints_its_task(
    shared_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert predict(shared_stack.url, "model_a", '{"data": "cli"}') == 0
    task = json.loads(capsys.readouterr().out)
    assert task["status"] == "succeeded"
    assert task["result"] == {"reply": "Processed message: cli"}


@pytest.mark.parametrize(
    ("model", "body", "error_type"),
    [("no_such_model", '{"data": "x"}', "ModelNotFound"), ("model_a", "{no", "InvalidRequest")],
)
def test_an_error_prints_the_gateways_error(
    shared_stack: Stack,
    capsys: pytest.CaptureFixture[str],
    model: str,
    body: str,
    error_type: str,
) -> None:
    assert predict(shared_stack.url, model, body) == 1
    assert json.loads(capsys.readouterr().out)["error"]["type"] == error_type


def test_an_unreachable_gateway_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SystemExit, match=f"cannot reach the gateway at {url}"):
        predict(url, "model_a", '{"data": "x"}')
