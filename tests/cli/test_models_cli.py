"""`inferq models ...`, the console script as a user runs it, against a real gateway: push a
file, list, show, move an alias, deploy, delete, and errors that say what is wrong."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_stack
from tests.models.onnx_graphs import doubler
from tests.stack import Stack

CONSOLE = str(Path(sys.executable).parent / "inferq")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for stack in make_stack(tmp_path_factory, INFERQ_MODEL_CHANGES="loopback"):
        stack.start_gateway()
        yield stack


def inferq(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in stack.env.items() if k != "PYTHONPATH"}
    env["INFERQ_GATEWAY_URL"] = stack.url
    return subprocess.run(
        [CONSOLE, "models", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_push_list_show_alias_deploy_and_delete(gateway: Stack, tmp_path: Path) -> None:
    model = tmp_path / "scaler.onnx"
    model.write_bytes(doubler())
    pushed = inferq(gateway, "push", str(model), "--name", "scaler", "--alias", "production")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith("pushed scaler@1 (")
    assert "input  x: float32 ['batch', 3]" in pushed.stdout
    assert inferq(gateway, "push", str(model), "--name", "scaler").returncode == 0

    listed = inferq(gateway, "list")
    assert listed.returncode == 0, listed.stderr
    assert "scaler" in listed.stdout and "production->1" in listed.stdout
    assert "scaler@2" in listed.stdout
    assert inferq(gateway).stdout == listed.stdout  # `inferq models` lists

    shown = inferq(gateway, "show", "scaler@production")
    assert shown.returncode == 0 and '"version": 1' in shown.stdout

    moved = inferq(gateway, "alias", "scaler", "production", "2")
    assert moved.returncode == 0 and '"version": 2' in moved.stdout
    deployed = inferq(gateway, "deploy", "scaler@1", "--replicas", "0", "--url", gateway.url)
    assert deployed.returncode == 0, deployed.stderr

    refused = inferq(gateway, "delete", "scaler@2")
    assert refused.returncode == 1
    assert "error 409" in refused.stderr and "production" in refused.stderr
    assert inferq(gateway, "delete", "scaler@1").returncode == 0
    assert "scaler@1" not in inferq(gateway, "list").stdout


def test_errors_say_what_is_wrong(gateway: Stack, tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    refused = inferq(gateway, "push", str(junk), "--name", "junk")
    assert refused.returncode == 1 and "error 422" in refused.stderr
    assert "error 404" in inferq(gateway, "show", "nosuch").stderr
    bad_ref = inferq(gateway, "deploy", "scaler")
    assert bad_ref.returncode != 0 and "NAME@VERSION" in bad_ref.stderr
    env_less = subprocess.run(
        [CONSOLE, "models", "--url", "http://127.0.0.1:9"], capture_output=True, text=True
    )
    assert env_less.returncode != 0 and "cannot reach the gateway" in env_less.stderr
