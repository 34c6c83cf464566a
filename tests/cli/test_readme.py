"""The README's quickstart commands, run as written (the shell, curl and the console script)
against a running gateway: a command that fails for a user fails here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_stack
from tests.stack import ROOT, Stack

README = ROOT / "README.md"
QUICKSTART = re.compile(r"## Quickstart\n\n```bash\n(.*?)```", re.S)
SKIPPED = ("make up", "open ", "/tasks/3f…")  # the terminal it runs in, a browser, a placeholder


def quickstart_commands() -> list[str]:
    block = QUICKSTART.search(README.read_text())
    assert block, "README has no Quickstart block"
    # Join continuation lines; drop comments (a "#" after two spaces or at the start).
    text = block.group(1).replace("\\\n", " ")
    lines = [re.split(r"(^|\s{2,})#", line)[0].strip() for line in text.splitlines()]
    return [line for line in lines if line and not any(s in line for s in SKIPPED)]


def test_the_quickstart_holds_the_commands_a_user_runs() -> None:
    commands = quickstart_commands()
    assert sum(c.startswith("curl ") for c in commands) == 2, commands
    assert sum(c.startswith(".venv/bin/inferq ") for c in commands) == 2, commands


@pytest.mark.skipif(shutil.which("curl") is None, reason="the quickstart uses curl")
def test_the_quickstart_commands_work_as_written(shared_stack: Stack, tmp_path: Path) -> None:
    for command in quickstart_commands():
        result = run_as_written(command, shared_stack)
        if command.startswith("curl"):
            answer = json.loads(result.stdout)
            assert answer.get("status") in ("queued", "succeeded"), (command, answer)


MODELS_AS_DATA = re.compile(r"## Models as data\n.*?```bash\n(.*?)```", re.S)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the section uses curl")
def test_the_models_as_data_commands_work_as_written(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Upload, deploy, predict, upload again, move the alias: against a gateway and the model
    host, as `make up` runs them (model changes allowed from loopback)."""
    block = MODELS_AS_DATA.search(README.read_text())
    assert block, "README has no Models as data block"
    for stack in make_stack(tmp_path_factory, INFERQ_MODEL_CHANGES="loopback"):
        stack.start_gateway()
        stack.spawn("host", "host")
        for command in commands_of(block.group(1)):
            result = run_as_written(command, stack, timeout=90)
            if " predict " in command:
                task = json.loads(result.stdout)
                assert task["status"] == "succeeded" and task["model"] == "digits@1", task
                assert len(task["result"]["probabilities"]) == 10
        assert "production->2" in result.stdout  # the last command lists the catalog
        stack.wait_live("digits@1", workers=2, timeout=60)
        stack.wait_live("digits@2", timeout=60)
        url = f"{stack.url}/predict/digits@production?wait=10"
        answer = json.loads(
            subprocess.run(
                [
                    "curl",
                    "-s",
                    "-X",
                    "POST",
                    url,
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    '{"pixels": [' + ",".join(["0.5"] * 64) + "]}",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
        )
        assert answer["model"] == "digits@2" and answer["status"] == "succeeded", answer


API_KEYS = re.compile(r"## API keys\n.*?```bash\n(.*?)```", re.S)


def test_the_api_keys_commands_work_as_written(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Run as one shell session (the first line exports the key the others send), against a
    gateway with no key yet: after the first key, a call without one is refused."""
    block = API_KEYS.search(README.read_text())
    assert block, "README has no API keys block"
    for stack in make_stack(tmp_path_factory):
        stack.start_gateway()
        stack.start_worker("model_a")
        stack.wait_live("model_a")
        script = "set -euo pipefail\n" + "\n".join(commands_of(block.group(1)))
        result = run_as_written(script, stack)
        lines = result.stdout.splitlines()
        assert "401" in lines, result.stdout
        assert any('"models"' in line for line in lines), result.stdout
        task = json.loads(result.stdout[result.stdout.rindex("\n{\n") :])  # inferq predict's
        assert task["status"] == "succeeded", task
        assert task["result"] == {"reply": "Processed message: example"}
        assert "batch-jobs" in result.stdout and "100/second" in result.stdout  # keys list


def commands_of(block: str) -> list[str]:
    text = block.replace("\\\n", " ")
    lines = [re.split(r"(^|\s{2,})#", line)[0].strip() for line in text.splitlines()]
    return [line for line in lines if line]


def run_as_written(
    command: str, stack: Stack, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs a README command in bash from the checkout, against ``stack``'s gateway and with
    this suite's console script (the suite's venv may lie elsewhere); it must exit 0."""
    command = command.replace("http://localhost:8000", stack.url)
    command = command.replace(".venv/bin/inferq", str(Path(sys.executable).parent / "inferq"))
    result = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**stack.env, "INFERQ_GATEWAY_URL": stack.url},
    )
    assert result.returncode == 0, (command, result.stdout, result.stderr, stack.logs())
    return result
