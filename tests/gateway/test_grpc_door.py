"""The gRPC door's interceptor (`api_service.grpc.door`) on a grpc.aio server in this process:
the authentication hook guards unary and streaming calls alike and hands the caller to the
servicer, errors get the error table's status codes (and their type in the trailing metadata),
a servicer's bug is INTERNAL without its details, and calls are logged. No gateway core: the
services here are grpcio-health-checking's and a bytes-in, bytes-out one of the test's."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from starlette.types import Scope

from api_service.core.gateway import Caller
from api_service.grpc.door import Door, current_call
from inferq.errors import Forbidden, InvalidRequest


async def refuse(scope: Scope, headers: dict[str, str]) -> Caller | None:
    assert scope["type"] == "grpc" and scope["client"][0] == "127.0.0.1"
    if headers.get("authorization") != "Bearer let-me-in":
        raise Forbidden("send a key")
    return Caller("tester")


async def who(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"bad":
        raise InvalidRequest("bad request")
    if request == b"bug":
        raise KeyError("a secret")
    caller = current_call().caller
    return caller.name.encode() if caller else b"anonymous"


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[Door(refuse, access_log=True)])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    methods = {"Who": grpc.unary_unary_rpc_method_handler(who)}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Door", methods)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(0)


KEY = (("authorization", "Bearer let-me-in"),)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def call_who(channel: grpc.aio.Channel, body: bytes, **kwargs: Any) -> bytes:
    return await channel.unary_unary("/test.Door/Who")(body, **kwargs)  # type: ignore[no-any-return]


async def test_the_hook_guards_unary_and_streaming_calls(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    calls = [
        stub.Check(health_pb2.HealthCheckRequest()),
        stub.Watch(health_pb2.HealthCheckRequest()).read(),
        call_who(channel, b""),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert raised.value.details() == "send a key"
        assert ("inferq-error-type", "Forbidden") in tuple(raised.value.trailing_metadata())
    answer = await stub.Check(health_pb2.HealthCheckRequest(), metadata=KEY)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    watch = stub.Watch(health_pb2.HealthCheckRequest(), metadata=KEY)
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    assert await call_who(channel, b"", metadata=KEY) == b"tester"


async def test_errors_get_the_tables_codes_and_calls_are_logged(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="api_service.access"):
        traceparent = f"00-{TRACE_ID}-{'1' * 16}-01"
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call_who(channel, b"bad", metadata=(*KEY, ("traceparent", traceparent)))
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details() == "bad request"
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call_who(channel, b"bug", metadata=KEY)
        assert raised.value.code() is grpc.StatusCode.INTERNAL
        assert raised.value.details() == "internal error"  # not the exception's text
    lines = [r.getMessage() for r in caplog.records if r.name == "api_service.access"]
    assert [line.split(" in ")[0] for line in lines if line.startswith("grpc ")] == [
        "grpc /test.Door/Who INVALID_ARGUMENT",
        "grpc /test.Door/Who INTERNAL",
    ]
    assert any("error serving gRPC /test.Door/Who" in r.getMessage() for r in caplog.records)
    first = next(r for r in caplog.records if r.getMessage().startswith("grpc "))
    assert first.trace_id == TRACE_ID  # type: ignore[attr-defined]  # the caller's trace
