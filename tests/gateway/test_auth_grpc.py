"""API keys at the gRPC door of a real gateway process (``INFERQ_AUTH=on``, keys made in its
catalog before it started, a real model_b worker). Every method of the Open Inference
Protocol's service and of inferq's own, found through the server's reflection, answers
UNAUTHENTICATED without a key or with a revoked or malformed one, PERMISSION_DENIED with a
key lacking its scope, and is served with the right one, sent as ``authorization: Bearer``
or ``x-api-key`` metadata; health, reflection and the server's live and ready calls answer
anyone. Triton's client sends its keys as headers; tasks are their key's (NOT_FOUND for any
other, as for a missing one, at once even with ``wait_s``); a key limited to model_a may not
infer model_b; a revoked key stops working within ``INFERQ_KEY_CACHE_S``. A file of its own:
it imports tritonclient.grpc, whose protocol messages clash with the gateway's in one process
(`test_auth_doors` for HTTP and WebSocket)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.utils import InferenceServerException

from proto import inferq_service_pb2 as inferq_pb
from proto import inferq_service_pb2_grpc as inferq_grpc
from proto import models_pb2
from tests.gateway.keyed import UNKNOWN_TOKEN, Keys, bearer, key_id, keyed_gateway, new_key
from tests.stack import Stack, wait_until

SERVICES = ("inference.GRPCInferenceService", "inferq.v1.InferqService")
#: What anyone may call (the contract of issue 17), beside the health and reflection services.
PUBLIC = frozenset(
    {"/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady"}
)
PREDICT = frozenset(
    {"/inference.GRPCInferenceService/ModelInfer", "/inferq.v1.InferqService/Submit"}
)
SERVING = health_pb2.HealthCheckResponse.SERVING
PIXELS = np.random.default_rng(17).random((2, 64), dtype=np.float32)
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Keys]]:
    yield from keyed_gateway(tmp_path_factory, ("model_b", "sleep"))


@pytest.fixture(scope="module")
def channel(gateway: tuple[Stack, Keys]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gateway[0].grpc_target) as channel:
        yield channel


@pytest.fixture(scope="module")
def methods(channel: grpc.Channel) -> dict[str, bool]:
    """Every method of the two services, as the server's reflection (public) tells them:
    whether each streams its answers, by ``/package.Service/Method``."""
    database = ProtoReflectionDescriptorDatabase(channel)
    assert set(database.get_services()) >= {*SERVICES, "grpc.health.v1.Health"}
    found = {}
    for name in SERVICES:
        package, _, service_name = name.rpartition(".")
        file = database.FindFileContainingSymbol(name)
        [service] = [s for s in file.service if s.name == service_name]
        for method in service.method:
            assert not method.client_streaming, method.name
            found[f"/{package}.{service_name}/{method.name}"] = method.server_streaming
    assert {
        "/inference.GRPCInferenceService/ModelInfer",
        "/inferq.v1.InferqService/WatchTask",
    } <= set(found)
    return found


def keyed(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def call(channel: grpc.Channel, method: str, streams: bool, metadata: Metadata) -> grpc.StatusCode:
    """The status of ``method`` called with an empty request (each field its default)."""
    try:
        if streams:
            for _ in channel.unary_stream(method)(b"", metadata=metadata, timeout=10):
                pass
        else:
            channel.unary_unary(method)(b"", metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            trailer = dict(error.trailing_metadata() or ())
            expected = "Unauthenticated" if code is grpc.StatusCode.UNAUTHENTICATED else "Forbidden"
            assert trailer["inferq-error-type"] == expected, (method, trailer)
        return code
    return grpc.StatusCode.OK


def expected_scope(method: str) -> str | None:
    if method in PUBLIC:
        return None
    return "predict" if method in PREDICT else "read"


def test_every_method_needs_its_scope(
    gateway: tuple[Stack, Keys], channel: grpc.Channel, methods: dict[str, bool]
) -> None:
    _, keys = gateway
    with_scope = {"predict": keys.user, "read": keys.reader}
    without_scope = {"predict": keys.reader, "read": keys.admin}
    refusals = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    for method, streams in methods.items():
        needed = expected_scope(method)
        if needed is None:
            assert call(channel, method, streams, ()) is grpc.StatusCode.OK, method
            continue
        for metadata in ((), keyed(keys.revoked), keyed(UNKNOWN_TOKEN), keyed("garbage")):
            code = call(channel, method, streams, metadata)
            assert code is grpc.StatusCode.UNAUTHENTICATED, (method, metadata, code)
        code = call(channel, method, streams, keyed(without_scope[needed]))
        assert code is grpc.StatusCode.PERMISSION_DENIED, (method, code)
        token = with_scope[needed]
        for metadata in (
            keyed(token),
            (("authorization", f"bearer   {token} "),),
            (("x-api-key", token),),
        ):
            code = call(channel, method, streams, metadata)
            assert code not in refusals, (method, metadata, code)
            assert code is not grpc.StatusCode.INTERNAL, (method, code)


def test_malformed_keys_are_unauthenticated(
    gateway: tuple[Stack, Keys], channel: grpc.Channel, methods: dict[str, bool]
) -> None:
    _, keys = gateway
    user_id = key_id(keys.user)
    tokens = ["", "iq_", f"iq_{user_id}_{'A' * 43}", keys.user + "x", keys.user.upper(), "iq_ x"]
    for token in tokens:
        for metadata in (
            (("authorization", f"Bearer {token}"),),
            (("authorization", f"Basic {token}"),),
            (("x-api-key", token),),
        ):
            for method, streams in methods.items():
                if expected_scope(method) is not None:
                    code = call(channel, method, streams, metadata)
                    assert code is grpc.StatusCode.UNAUTHENTICATED, (method, metadata, code)


def test_health_and_reflection_answer_anyone(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)

    def status(service: str) -> int:
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return answer.status  # type: ignore[no-any-return]

    for service in ("", *SERVICES):
        assert status(service) == SERVING, service
    # A model's name is there once the health's refresh has seen its worker.
    wait_until(lambda: known(status, "model_b") == SERVING, 5, "model_b SERVING")
    database = ProtoReflectionDescriptorDatabase(channel)  # streams, without a key
    infer = database.FindFileContainingSymbol("inference.GRPCInferenceService")
    assert "ModelInferRequest" in {m.name for m in infer.message_type}


def test_tritons_client_sends_its_key_as_headers(gateway: tuple[Stack, Keys]) -> None:
    stack, keys = gateway
    client = triton.InferenceServerClient(stack.grpc_target)
    try:
        assert client.is_server_live() and client.is_server_ready()  # public
        with pytest.raises(InferenceServerException) as refused:
            client.get_model_metadata("model_b")
        assert "UNAUTHENTICATED" in str(refused.value.status())
        for headers in ({"authorization": f"Bearer {keys.user}"}, {"x-api-key": keys.user}):
            assert client.is_model_ready("model_b", headers=headers)
            metadata = client.get_model_metadata("model_b", headers=headers, as_json=True)
            assert [t["name"] for t in metadata["outputs"]] == ["label", "probabilities"]
            result = client.infer("model_b", [pixels()], headers=headers)
            assert result.as_numpy("label").shape == (2,)
        with pytest.raises(InferenceServerException) as refused:
            client.infer("model_b", [pixels()], headers={"x-api-key": keys.reader})
        assert "PERMISSION_DENIED" in str(refused.value.status())
        with pytest.raises(InferenceServerException) as refused:
            client.infer("model_b", [pixels()], headers={"x-api-key": keys.model_a})
        assert "PERMISSION_DENIED" in str(refused.value.status())
        assert "may not use the model 'model_b'" in refused.value.message()
    finally:
        client.close()


def known(status: Callable[[str], int], service: str) -> int | None:
    try:
        return status(service)
    except grpc.RpcError as error:
        assert error.code() is grpc.StatusCode.NOT_FOUND, error
        return None


def pixels() -> triton.InferInput:
    given = triton.InferInput("pixels", list(PIXELS.shape), "FP32")
    given.set_data_from_numpy(PIXELS)
    return given


def test_a_task_is_its_keys_only(gateway: tuple[Stack, Keys], channel: grpc.Channel) -> None:
    _, keys = gateway
    tasks = inferq_grpc.InferqServiceStub(channel)
    request = models_pb2.ModelBRequest(pixels=PIXELS[0].tolist()).SerializeToString()
    submit = inferq_pb.SubmitRequest(model="model_b", request=request, wait_s=10)
    task = tasks.Submit(submit, metadata=keyed(keys.user), timeout=20)
    assert task.status == "succeeded", task
    mine = tasks.GetTask(inferq_pb.GetTaskRequest(task_id=task.task_id), metadata=keyed(keys.user))
    assert mine.status == "succeeded" and mine.result == task.result

    def refusal(task_id: str, token: str, watch: bool) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as raised:
            if watch:
                watched = inferq_pb.WatchTaskRequest(task_id=task_id)
                list(tasks.WatchTask(watched, metadata=keyed(token), timeout=10))
            else:
                got = inferq_pb.GetTaskRequest(task_id=task_id)
                tasks.GetTask(got, metadata=keyed(token), timeout=10)
        return raised.value

    missing_id = "f" * 32
    for watch in (False, True):
        missing = refusal(missing_id, keys.other, watch)
        for token in (keys.other, keys.reader):
            theirs = refusal(task.task_id, token, watch)
            assert theirs.code() is missing.code() is grpc.StatusCode.NOT_FOUND
            assert theirs.details().replace(task.task_id, missing_id) == missing.details()
            assert dict(theirs.trailing_metadata())["inferq-error-type"] == "TaskNotFound"

    with pytest.raises(grpc.RpcError) as raised:
        tasks.Submit(submit, metadata=keyed(keys.model_a), timeout=10)
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_waiting_on_another_keys_task_answers_as_for_a_missing_one(
    gateway: tuple[Stack, Keys], channel: grpc.Channel
) -> None:
    _, keys = gateway
    tasks = inferq_grpc.InferqServiceStub(channel)
    request = models_pb2.SleepRequest(ms=3000).SerializeToString()
    submit = inferq_pb.SubmitRequest(model="sleep", request=request)
    task = tasks.Submit(submit, metadata=keyed(keys.user), timeout=10)
    assert task.status in ("queued", "running"), task
    for task_id in ("f" * 32, task.task_id):
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            got = inferq_pb.GetTaskRequest(task_id=task_id, wait_s=2)
            tasks.GetTask(got, metadata=keyed(keys.other), timeout=10)
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND
        assert time.monotonic() - started < 1, "it waited for the task"


def test_a_revoked_key_stops_working_within_the_cache_time(
    gateway: tuple[Stack, Keys], channel: grpc.Channel
) -> None:
    stack, keys = gateway
    token = new_key(stack, keys.admin, "grpc-short-lived", ["read"])
    method = "/inference.GRPCInferenceService/ServerMetadata"
    assert call(channel, method, False, keyed(token)) is grpc.StatusCode.OK
    revoked = httpx.delete(f"{stack.url}/keys/{key_id(token)}", headers=bearer(keys.admin))
    assert revoked.status_code == 200, revoked.text
    started = time.monotonic()
    while (code := call(channel, method, False, keyed(token))) is grpc.StatusCode.OK:
        assert time.monotonic() - started < 3, "the revoked key still works after 3 s"
        time.sleep(0.05)
    assert code is grpc.StatusCode.UNAUTHENTICATED
