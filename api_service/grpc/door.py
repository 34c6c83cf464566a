"""The gRPC door's one interceptor: for every call, what `api_service.front_door` does for
every HTTP request. The caller's trace context is continued from the call's metadata
(``traceparent``), the authentication hook runs, an `inferq.errors.InferqError` becomes its
gRPC status (`inferq.errors.grpc_code`; never INTERNAL for a client's mistake), and the call
is counted, timed (`api_service.metrics.record_request`, door ``grpc``) and, if asked,
logged. The servicers read the caller and trace context with `current_call`."""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from api_service.core.gateway import Caller
from api_service.front_door import Authenticate
from api_service.metrics import record_request
from inferq.errors import InferqError, grpc_code
from inferq.tracing import server_span

logger = logging.getLogger("api_service.access")


@dataclass(frozen=True)
class Call:
    """Who makes the call being served, and the trace context to pass on."""

    caller: Caller | None = None
    trace_context: dict[str, str] = field(default_factory=dict)


_CALL: contextvars.ContextVar[Call] = contextvars.ContextVar("inferq_grpc_call")
_OUTSIDE = Call()


def current_call() -> Call:
    """The call this task serves (outside a call: anonymous, no trace context)."""
    return _CALL.get(_OUTSIDE)


def status_of(error: InferqError) -> grpc.StatusCode:
    """The gRPC status an error is answered with: the error table's (`inferq.errors`)."""
    return getattr(grpc.StatusCode, grpc_code(error))  # type: ignore[no-any-return]


class Door(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, authenticate: Authenticate, access_log: bool) -> None:
        self.authenticate = authenticate
        self.access_log = access_log
        # Each served method's handler, wrapped once (grpc asks for it on every call).
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:  # no such method: grpc answers UNIMPLEMENTED (not kept)
                return None
            wrapped = self._wrapped[method] = self._wrap(method, handler)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_stream is not None:  # reflection
            return grpc.stream_stream_rpc_method_handler(
                self._streaming(method, handler.stream_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary is not None:  # none served today; guarded all the same
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return handler

    def _unary(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with self._serving(method, request, context):
                return await behavior(request, context)

        return unary

    def _streaming(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behavior):

            async def generator(request: Any, context: grpc.aio.ServicerContext) -> Any:
                async with self._serving(method, request, context):
                    async for message in behavior(request, context):
                        yield message

            return generator

        async def writer(request: Any, context: grpc.aio.ServicerContext) -> None:
            async with self._serving(method, request, context):  # it calls context.write
                await behavior(request, context)

        return writer

    @contextlib.asynccontextmanager
    async def _serving(
        self, method: str, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[None]:
        """One call, around its servicer."""
        started = time.perf_counter()
        status = grpc.StatusCode.OK
        metadata = context.invocation_metadata() or ()
        headers = {k: v for k, v in metadata if isinstance(v, str)}  # "-bin" keys are bytes
        with server_span(f"grpc {method}", headers) as span:
            try:
                caller = await self.authenticate(_scope(method, context), headers)
                _CALL.set(Call(caller, span.trace_context))
                yield
            except InferqError as error:
                status = status_of(error)
                trailer = (("inferq-error-type", error.error_type),)
                await context.abort(status, error.message, trailing_metadata=trailer)
            except grpc.aio.AbortError:  # the servicer chose its status
                status = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception as error:  # noqa: BLE001 - every error gets its status
                logger.error("error serving gRPC %s", method, exc_info=error)
                status = grpc.StatusCode.INTERNAL
                await context.abort(status, "internal error")
            except BaseException:  # cancelled: the client left, or the server stops
                status = grpc.StatusCode.CANCELLED
                raise
            finally:
                seconds = time.perf_counter() - started
                record_request(method, _model_of(request), status.name, seconds, door="grpc")
                if self.access_log or status is grpc.StatusCode.INTERNAL:
                    self._log(method, status, seconds, span.trace_context)

    def _log(
        self, method: str, status: grpc.StatusCode, seconds: float, trace: dict[str, str]
    ) -> None:
        duration_ms = round(seconds * 1000, 3)
        logger.info(
            "grpc %s %s in %.1f ms",
            method,
            status.name,
            duration_ms,
            extra={
                "grpc_status": status.name,
                "duration_ms": duration_ms,
                "trace_id": trace["traceparent"][3:35],
            },
        )


def _scope(method: str, context: grpc.aio.ServicerContext) -> dict[str, Any]:
    """The little of an ASGI scope a gRPC call has, for the authentication hook."""
    peer: str = context.peer() or ""  # "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000"
    host, _, port = peer.partition(":")[2].rpartition(":")
    return {
        "type": "grpc",
        "path": method,
        "client": (host.strip("[]"), int(port)) if port.isdigit() else None,
    }


def _model_of(request: Any) -> str:
    """The model a request names (a metrics label), if its message has a model field."""
    for name in ("model_name", "model"):
        value = getattr(request, name, None)
        if isinstance(value, str):
            return value
    return ""
