"""The ``inferq`` console script as a new user runs it: the README's own commands, from the
repository root or the user's own folder, with no PYTHONPATH and the product's defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.stack import ROOT, Stack

USER_MODEL = '''
from proto import models_pb2
from workers import Model


class Reverse(Model[models_pb2.ModelARequest, models_pb2.ModelAResponse]):
    name = "reverse"
    request_type = models_pb2.ModelARequest
    response_type = models_pb2.ModelAResponse

    async def process_request(self, request):
        return models_pb2.ModelAResponse(reply=request.data[::-1])
'''


def predict(stack: Stack, model: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{stack.url}/predict/{model}", params={"wait": 10}, json=body, timeout=15)


def test_the_readme_worker_command_runs_as_written_with_two_replicas(
    stack: Stack, tmp_path: Path
) -> None:
    stack.start_gateway()
    log_file = tmp_path / "logs" / "worker.log"
    # README "Add a model", step 3, from the repository root.
    stack.spawn_console(
        "word_count",
        "worker",
        "examples.word_count:WordCountModel",
        "--replicas",
        "2",
        INFERQ_LOG_FILE=str(log_file),
    )
    stack.wait_live("word_count", workers=2)
    response = predict(stack, "word_count", {"text": "to be or not to be"})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {
        "words": 6,
        "counts": {"to": 2, "be": 2, "or": 1, "not": 1},
    }
    # Each replica writes its own rotated file: one file cannot be rotated by two processes.
    replica_files = sorted(p.name for p in log_file.parent.glob("worker-*.log"))
    assert replica_files == [
        "worker-examples_word_count_WordCountModel-0.log",
        "worker-examples_word_count_WordCountModel-1.log",
    ]
    for name in replica_files:
        lines = [json.loads(line) for line in (log_file.parent / name).read_text().splitlines()]
        assert any("serving word_count" in line["message"] for line in lines), lines


def test_a_model_in_the_users_own_folder_loads_from_there_or_by_app_dir(
    stack: Stack, tmp_path: Path
) -> None:
    project = tmp_path / "my_project"
    project.mkdir()
    (project / "my_models.py").write_text(USER_MODEL)
    stack.start_gateway()
    stack.spawn_console("from-cwd", "worker", "my_models:Reverse", cwd=project)
    stack.spawn_console(
        "by-app-dir", "worker", "my_models:Reverse", "--app-dir", str(project), cwd=tmp_path
    )
    stack.wait_live("reverse", workers=2)
    response = predict(stack, "reverse", {"data": "inferq"})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"reply": "qrefni"}


def test_a_target_that_cannot_be_imported_says_where_it_looked(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "inferq"), "worker", "no_such_module:Model"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "no module 'no_such_module'" in result.stderr
    assert str(tmp_path.resolve()) in result.stderr
    assert "--app-dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_seeds_model_a_is_served_as_its_readme_writes_it(stack: Stack) -> None:
    stack.start_gateway()
    stack.spawn_console("seed", "worker", "tests.models.seed.model_a:ModelA", cwd=ROOT)
    stack.wait_live("model_a")
    schema = httpx.get(f"{stack.url}/models/model_a").json()["request_schema"]
    assert "messages" in schema["properties"], schema
    response = predict(stack, "model_a", {"messages": "example"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    assert response.json()["result"] == {"reply": "Processed message: example\n"}
    # A body the seed's message does not have is refused at the gateway, as for any model.
    wrong = httpx.post(f"{stack.url}/predict/model_a", json={"data": "example"})
    assert wrong.status_code == 422
