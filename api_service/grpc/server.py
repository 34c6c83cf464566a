"""The gateway's gRPC server: grpcio's asyncio server on ``INFERQ_GRPC_PORT``, in the
gateway's process and event loop (uvloop under ``inferq gateway``), on the same
`api_service.core.gateway.Gateway` as the HTTP door. `serving_grpc` starts it with the
gateway's lifespan and, on shutdown, stops it in order: every health name NOT_SERVING, no new
calls, the calls in flight given ``INFERQ_GRPC_GRACE_S`` to finish, then cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from api_service.core.gateway import Gateway
from api_service.front_door import Authenticate
from api_service.grpc.door import Door
from api_service.grpc.health import ServingHealth
from api_service.grpc.inference import InferenceService
from api_service.grpc.tasks import InferqService
from inferq.settings import GatewaySettings
from proto import (
    grpc_predict_v2_pb2,
    grpc_predict_v2_pb2_grpc,
    inferq_service_pb2,
    inferq_service_pb2_grpc,
)

logger = logging.getLogger(__name__)

#: The services served, by their full names (as health and reflection name them).
SERVICES = [
    grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    inferq_service_pb2.DESCRIPTOR.services_by_name["InferqService"].full_name,
]


@contextlib.asynccontextmanager
async def serving_grpc(
    gateway: Gateway, settings: GatewaySettings, authenticate: Authenticate
) -> AsyncIterator[grpc.aio.Server | None]:
    """The started server (None with ``INFERQ_GRPC_PORT=0``); stopped gracefully on exit."""
    if not settings.grpc_port:
        yield None
        return
    limit = settings.grpc_max_message_bytes
    server = grpc.aio.server(
        interceptors=[Door(authenticate, settings.gateway_access_log)],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # A port another process holds is an error, not a port shared with it.
            ("grpc.so_reuseport", 0),
        ],
    )
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceService(gateway), server
    )
    inferq_service_pb2_grpc.add_InferqServiceServicer_to_server(InferqService(gateway), server)
    serving = ServingHealth(gateway, SERVICES)
    health_pb2_grpc.add_HealthServicer_to_server(serving.servicer, server)
    reflection.enable_server_reflection(
        [*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    address = _address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(address)
    except RuntimeError as error:
        raise RuntimeError(
            f"cannot serve gRPC on {address} (INFERQ_GRPC_PORT): is the port in use? ({error})"
        ) from None
    await serving.start()
    await server.start()
    logger.info("gRPC on %s", address)
    try:
        with _draining_on_signal(serving):
            yield server
    finally:
        await serving.drain()
        await server.stop(settings.grpc_grace_s)
        logger.info("gRPC stopped")


@contextlib.contextmanager
def _draining_on_signal(serving: ServingHealth) -> Iterator[None]:
    """Health reads NOT_SERVING from the SIGTERM (or SIGINT) on, not only once the HTTP
    server has finished its own requests and ends the lifespan: the handler uvicorn installed
    still runs after ours."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only: no drain before the lifespan ends
        return
    loop = asyncio.get_running_loop()
    drains: list[asyncio.Task[None]] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handle(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(lambda: drains.append(loop.create_task(serving.drain())))
        handler = previous[signal.Signals(sig)]
        if callable(handler):
            handler(sig, frame)

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is handle:
                signal.signal(sig, handler)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
