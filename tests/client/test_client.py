"""`inferq_client` against real gateway and worker processes: sync and async, predict, submit
and its handle, stream over the WebSocket, the gateway's errors as inferq's classes."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator

import httpx
import pytest
from sklearn.datasets import load_digits

from inferq.errors import InvalidRequest, ModelNotFound, TaskNotFound
from inferq.tasks.state import TaskStatus
from inferq_client import AsyncClient, Client, TaskFailed
from proto import models_pb2
from tests.conftest import make_stack
from tests.stack import ROOT, Stack


@pytest.fixture
def client(shared_stack: Stack) -> Iterator[Client]:
    with Client(shared_stack.url) as client:
        yield client


def test_predict_waits_for_the_result(client: Client) -> None:
    task = client.predict("model_a", {"data": "hi"})
    assert task.finished and task.status is TaskStatus.SUCCEEDED
    assert task.output() == {"reply": "Processed message: hi"}
    assert task.view["worker_id"] and task.model == "model_a"


def test_a_protobuf_body_gets_the_native_paths_result(client: Client, shared_stack: Stack) -> None:
    pixels = (load_digits().data[7] / 16).tolist()
    request = models_pb2.ModelBRequest(pixels=pixels)
    native = httpx.post(
        f"{shared_stack.url}/predict/model_b", params={"wait": 30}, json={"pixels": pixels}
    ).json()
    assert client.predict("model_b", request).output() == native["result"]
    assert client.predict("model_b", request.SerializeToString()).output() == native["result"]


def test_submit_gives_a_handle_on_the_task(client: Client) -> None:
    handle = client.submit("model_a", {"data": "later"})
    assert client.task(handle.task_id).status().status in set(TaskStatus)
    assert handle.result(timeout=10) == {"reply": "Processed message: later"}
    assert handle.status().succeeded


def test_the_gateways_errors_are_raised_as_their_class(client: Client) -> None:
    with pytest.raises(ModelNotFound) as unknown:
        client.predict("no_such_model", {"data": "x"})
    assert unknown.value.status_code == 404 and "no_such_model" in unknown.value.message
    with pytest.raises(InvalidRequest):
        client.predict("model_a", {"data": 5})
    with pytest.raises(InvalidRequest):
        client.predict("model_a", "{not json")
    with pytest.raises(TaskNotFound):
        client.task("0" * 32).status()


def test_stream_answers_each_input_over_one_socket(client: Client) -> None:
    bodies = [{"data": f"s{i}"} for i in range(20)]
    items = list(client.stream("model_a", bodies, in_flight=8))
    assert sorted(item.index for item in items) == list(range(20))
    for item in items:
        assert item.task is not None and item.error is None
        assert item.task.output() == {"reply": f"Processed message: s{item.index}"}


async def test_the_async_client_does_the_same(shared_stack: Stack) -> None:
    async with AsyncClient(shared_stack.url) as client:
        task = await client.predict("model_a", {"data": "async"})
        assert task.output() == {"reply": "Processed message: async"}
        handle = await client.submit("model_a", {"data": "handle"})
        assert await handle.result(timeout=10) == {"reply": "Processed message: handle"}
        assert (await handle.status()).succeeded
        with pytest.raises(ModelNotFound):
            await client.submit("no_such_model", {"data": "x"})
        bodies: list[dict[str, object]] = [{"data": "ok"}, {"data": 5}, {"data": "ok too"}]
        items = {item.index: item async for item in client.stream("model_a", bodies)}
        assert items[0].task is not None and items[0].task.succeeded
        assert isinstance(items[1].error, InvalidRequest) and items[1].task is None
        assert items[2].task is not None and items[2].task.output() == {
            "reply": "Processed message: ok too"
        }


@pytest.fixture(scope="module")
def sleep_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for stack in make_stack(tmp_path_factory):
        stack.start_gateway()
        stack.start_worker("sleep", INFERQ_CONCURRENCY="4")
        stack.wait_live("sleep")
        yield stack


def test_a_task_still_pending_or_failed_says_so(sleep_stack: Stack) -> None:
    with Client(sleep_stack.url) as client:
        pending = client.predict("sleep", {"ms": 2000}, wait=0.2)
        assert not pending.finished
        with pytest.raises(TimeoutError):
            pending.output()
        with pytest.raises(TimeoutError):
            client.task(pending.task_id).result(timeout=0.2)
        assert client.task(pending.task_id).result(timeout=10) == {"slept_ms": 2000}
        failed = client.predict("sleep", {"ms": -1})  # the model raises ValueError
        assert failed.status is TaskStatus.FAILED
        with pytest.raises(TaskFailed) as raised:
            failed.output()
        assert raised.value.error_type == "ValueError" and "ms must be" in raised.value.message


def section_code(heading: str) -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


@pytest.mark.parametrize(
    ("heading", "printed"),
    [
        (
            "WebSocket API",
            "['Processed message: m0', 'Processed message: m1', 'Processed message: m2']\n",
        ),
        (
            "Python client",
            "{'reply': 'Processed message: hi'}\n{'reply': 'Processed message: later'}\n"
            "['Processed message: x', 'Processed message: x']\n",
        ),
    ],
)
def test_the_readme_examples_run(shared_stack: Stack, heading: str, printed: str) -> None:
    host = shared_stack.url.removeprefix("http://")
    code = section_code(heading).replace("127.0.0.1:8000", host)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, "README.md", "exec"), {})
    assert output.getvalue() == printed
