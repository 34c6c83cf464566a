"""The Open Inference Protocol over REST (KServe v2, as Triton and MLServer speak it), on the
gateway core through `api_service.core.oip`:

- ``GET /v2`` (server metadata and its ``extensions``), ``GET /v2/health/live``,
  ``GET /v2/health/ready`` (200, or 400 while the broker or Redis is unreachable);
- ``GET /v2/models/{model}[/versions/{version}]`` (model metadata), ``.../ready`` (200, or 400
  while no worker serves it);
- ``POST /v2/models/{model}[/versions/{version}]/infer``: JSON tensors, and Triton's binary
  tensor data extension: with ``Inference-Header-Content-Length: n`` the body's first n bytes
  are the JSON request and the rest the raw data of each input whose ``parameters`` give a
  ``binary_data_size``, in order; an output is answered in binary when its ``parameters``
  say ``"binary_data": true`` or, for outputs not listed, when the request's ``parameters``
  say ``"binary_data_output": true`` (then the answer is ``application/octet-stream`` with
  ``Inference-Header-Content-Length``). It waits for the tasks up to ``INFERQ_MAX_WAIT_S``
  (30 s) or the request's ``parameters.timeout`` (microseconds, as Triton's clients send it),
  whichever is shorter; then 504 naming the tasks. With ``Prefer: respond-async`` (the
  ``async_infer`` extension) it answers ``202`` at once: ``{"model_name", "model_version",
  "id", "tasks": [{"task_id", "status", "location"} ...]}``, one task per row, each read at
  ``GET /tasks/{id}`` (``Location`` names it when there is one).

``{model}`` is a model's name, ``{version}`` a version number or an alias: inferq's
``model@version`` (`api_service.core.tensors` maps tensors to the model's messages). Bodies
of infer requests are limited by ``INFERQ_OIP_MAX_BODY_BYTES`` (64 MiB: a 1M-float tensor as
JSON), not ``INFERQ_MAX_BODY_BYTES``. Errors take the protocol's form ``{"error": "message"}``:
400 for a request that does not fit (tensors, shapes, datatypes, binary lengths), 404 for an
unknown model, and the hierarchy's status for the rest (`inferq.errors`).
"""

from __future__ import annotations

import weakref
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, cast

import orjson
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from api_service.core.gateway import Caller, Gateway
from api_service.core.oip import InferRequest, InferResponse, OpenInference, Submitted
from api_service.core.tensors import DATATYPES, Tensor, tensor_from_bytes, tensor_from_values
from api_service.errors import error_response
from api_service.responses import JSONResponse
from inferq.errors import (
    BodyTooLarge,
    InferqError,
    InvalidRequest,
    ModelNotFound,
    UnsupportedMediaType,
)
from inferq.settings import GatewaySettings
from inferq.tracing import inject

if TYPE_CHECKING:  # the front door's hot routes import this module
    from api_service.routes.hot import HttpRequest

HEADER_LENGTH = "inference-header-content-length"
BINARY = "application/octet-stream"


def oip_error(error: Exception, method: str, path: str) -> Response:
    """The protocol's error answer: ``{"error": "message"}``, 400 for a bad request."""
    if not isinstance(error, InferqError):  # Redis down, a bug: the gateway's own answer
        answer = error_response(error, method, path)
        message = orjson.loads(answer.body)["error"]["message"]
        retry = {k: v for k, v in answer.headers.items() if k == "retry-after"}
        return JSONResponse({"error": message}, answer.status_code, retry)
    status = 400 if error.status_code == 422 else error.status_code
    return JSONResponse({"error": error.message}, status, error.headers)


class OipRoute(APIRoute):
    """A route whose errors take the protocol's form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def oip_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as error:  # noqa: BLE001 - every error gets its answer
                return oip_error(error, request.method, request.url.path)

        return oip_handler


router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=OipRoute)


_PROTOCOLS: weakref.WeakKeyDictionary[Gateway, OpenInference] = weakref.WeakKeyDictionary()


def protocol_of(gateway: Gateway) -> OpenInference:
    """The gateway's `OpenInference` (it keeps the models' tensor mappings), made on first use
    and gone with the gateway."""
    oip = _PROTOCOLS.get(gateway)
    if oip is None:  # through a proxy: a value holding its key would keep it alive
        oip = _PROTOCOLS[gateway] = OpenInference(cast(Gateway, weakref.proxy(gateway)))
    return oip


def protocol(request: Request) -> OpenInference:
    return protocol_of(request.app.state.gateway)


@router.get("", summary="Server metadata")
async def server_metadata(request: Request) -> JSONResponse:
    return JSONResponse(protocol(request).server_metadata())


@router.get("/health/live", summary="The server is live")
async def live() -> JSONResponse:
    return JSONResponse({"live": True})


@router.get("/health/ready", summary="The server is ready (the broker and Redis reachable)")
async def ready(request: Request) -> JSONResponse:
    is_ready = await protocol(request).server_ready()
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 400)


@router.get("/models/{model}", summary="Model metadata")
async def model_metadata(model: str, request: Request) -> JSONResponse:
    return JSONResponse((await protocol(request).model_metadata(model)).to_json())


@router.get("/models/{model}/versions/{version}", summary="Model metadata of one version")
async def version_metadata(model: str, version: str, request: Request) -> JSONResponse:
    return JSONResponse((await protocol(request).model_metadata(model, version)).to_json())


@router.get("/models/{model}/ready", summary="The model is served")
async def model_ready(model: str, request: Request) -> JSONResponse:
    return await _ready(request, model, None)


@router.get("/models/{model}/versions/{version}/ready", summary="The version is served")
async def version_ready(model: str, version: str, request: Request) -> JSONResponse:
    return await _ready(request, model, version)


async def _ready(request: Request, model: str, version: str | None) -> JSONResponse:
    is_ready = await protocol(request).model_ready(model, version)
    return JSONResponse({"name": model, "ready": is_ready}, status_code=200 if is_ready else 400)


_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string", "enum": list(DATATYPES)},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "data": {"description": "row-major values, flat or nested"},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
        },
    },
}
#: The request body in the OpenAPI document (the front door's hot path parses it).
INFER_BODY = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {"type": "array", "items": _TENSOR},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": {
                                        "type": "object",
                                        "properties": {"binary_data": {"type": "boolean"}},
                                    },
                                },
                            },
                        },
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "binary_data_output": {"type": "boolean"},
                                "timeout": {"type": "integer", "description": "microseconds"},
                            },
                        },
                    },
                }
            }
        }
    }
}


@router.post(
    "/models/{model}/infer", summary="Inference (JSON or binary tensors)", openapi_extra=INFER_BODY
)
async def infer(model: str, request: Request) -> Response:
    return await _infer(request, model, None)


@router.post(
    "/models/{model}/versions/{version}/infer",
    summary="Inference on one version",
    openapi_extra=INFER_BODY,
)
async def version_infer(model: str, version: str, request: Request) -> Response:
    return await _infer(request, model, version)


async def _infer(request: Request, model: str, version: str | None) -> Response:
    """The FastAPI route's infer (the front door serves these paths itself: `hot_infer`)."""
    oip = protocol(request)
    body = await _read_all(request.headers, request.stream(), oip.gateway.settings)
    return await infer_answer(
        oip,
        model,
        version,
        body,
        request.headers,
        _trace_context(request),
        getattr(request.state, "caller", None),
    )


async def hot_infer(gateway: Gateway, request: HttpRequest) -> Response:
    """``POST /v2/models/{model}[/versions/{version}]/infer`` served by the front door itself
    (`api_service.routes.hot`): FastAPI's routing and middleware took half the gateway's CPU
    per request here (py-spy; a gateway and a model_b worker, 32 clients posting one row:
    ~900/s through FastAPI, ~1800/s on the native ``POST /predict?wait=``).
    ``request.path_param`` is the path between ``/v2/models/`` and ``/infer``."""
    try:
        model, version = _model_version(request.path_param)
        chunks = request.body.chunks() if request.body is not None else _no_chunks()
        body = await _read_all(request.headers, chunks, gateway.settings)
        return await infer_answer(
            protocol_of(gateway),
            model,
            version,
            body,
            request.headers,
            request.trace_context,
            request.caller,
        )
    except Exception as error:  # noqa: BLE001 - every error gets the protocol's answer
        return oip_error(error, "POST", request.scope["path"])


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield


async def _read_all(
    headers: Mapping[str, str], chunks: AsyncIterator[bytes], settings: GatewaySettings
) -> bytes:
    """The body, refusing (413) more than ``INFERQ_OIP_MAX_BODY_BYTES``."""
    limit = settings.oip_max_body_bytes
    declared = headers.get("content-length", "")
    if _is_size(declared) and int(declared) > limit:
        raise BodyTooLarge(_too_large(f" of {declared} bytes", limit))
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(_too_large("", limit))
        parts.append(chunk)
    return b"".join(parts)


def _decompressed(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip or deflate body (Triton's clients compress on request), inflated to at most
    ``limit`` bytes."""
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r}: send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise InvalidRequest(f"the body is not valid {encoding}: {error}") from None
    if len(plain) > limit:
        raise BodyTooLarge(_too_large(" once inflated", limit))
    return plain


def _model_version(param: str) -> tuple[str, str | None]:
    """``digits`` or ``digits/versions/3`` (the hot route's path parameter)."""
    model, _, rest = param.partition("/")
    if not rest:
        return model, None
    versions, _, version = rest.partition("/")
    if versions != "versions" or not version or "/" in version:
        raise ModelNotFound(f"no such path: /v2/models/{param}/infer")
    return model, version


async def infer_answer(
    oip: OpenInference,
    model: str,
    version: str | None,
    body: bytes,
    headers: Mapping[str, str],
    trace_context: Mapping[str, str],
    caller: Caller | None,
) -> Response:
    """The answer to an infer request's body: the outputs (JSON, or JSON and binary data), or,
    with ``Prefer: respond-async``, the 202 naming the tasks."""
    encoding = headers.get("content-encoding")
    if encoding is not None and (encoding := encoding.strip().lower()) != "identity":
        body = _decompressed(body, encoding, oip.gateway.settings.oip_max_body_bytes)
    parsed = _parse(body, headers.get(HEADER_LENGTH))
    timeout_us = parsed.params.get("timeout")
    if timeout_us is not None and (
        not isinstance(timeout_us, int | float) or isinstance(timeout_us, bool) or timeout_us <= 0
    ):
        raise InvalidRequest(f"parameters.timeout must be microseconds > 0, not {timeout_us!r}")
    infer_request = InferRequest(
        model=model,
        version=version,
        inputs=parsed.inputs,
        outputs=parsed.output_names,
        id=parsed.id,
        timeout_s=None if timeout_us is None else timeout_us / 1e6,
        trace_context=trace_context,
        caller=caller,
    )
    if "respond-async" in headers.get("prefer", ""):
        return _accepted(await oip.submit(infer_request))
    return _answer(await oip.infer(infer_request), parsed)


def _is_size(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit() alone takes "²"


def _too_large(what: str, limit: int) -> str:
    return f"body{what} exceeds the limit of {limit} bytes (INFERQ_OIP_MAX_BODY_BYTES)"


def _trace_context(request: Request) -> dict[str, str]:
    """The current span's context when spans are recorded, else the caller's own."""
    context = dict(inject({}))
    if not context:
        context = {
            k: request.headers[k] for k in ("traceparent", "tracestate") if k in request.headers
        }
    return context


class _Parsed:
    """An infer request's JSON, its input tensors, and which outputs go in binary."""

    def __init__(self, doc: dict[str, Any], inputs: list[Tensor]) -> None:
        self.inputs = inputs
        self.params = _object(doc.get("parameters"), "parameters")
        request_id = doc.get("id", "")
        if not isinstance(request_id, str):
            raise InvalidRequest("id must be a string")
        self.id = request_id
        binary = self.params.get("binary_data_output", False)
        if not isinstance(binary, bool):
            raise InvalidRequest("parameters.binary_data_output must be true or false")
        self.binary_default = binary
        self.binary: dict[str, bool] = {}
        outputs = doc.get("outputs")
        self.output_names: list[str] | None = None
        if outputs is not None:
            if not isinstance(outputs, list):
                raise InvalidRequest("outputs must be a list")
            self.output_names = []
            for output in outputs:
                output = _object(output, "an output")
                name = output.get("name")
                if not isinstance(name, str):
                    raise InvalidRequest("an output has no name")
                wanted = _object(output.get("parameters"), "output {!r}'s parameters", name)
                as_binary = wanted.get("binary_data", binary)
                if not isinstance(as_binary, bool):
                    raise InvalidRequest(f"output {name!r}: binary_data must be true or false")
                self.binary[name] = as_binary
                self.output_names.append(name)


def _object(value: Any, what: str, name: str = "") -> dict[str, Any]:
    """``value`` as a JSON object (None: an empty one); ``what`` names it, with ``name`` in
    its ``{!r}`` (formatted only for the error: this runs for every input)."""
    if type(value) is dict:
        return value
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what.format(name)} must be a JSON object")
    return value


def _parse(body: bytes, header_length: str | None) -> _Parsed:
    """The request's JSON and tensors; the binary data's lengths checked against the body."""
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        if not _is_size(header_length) or int(header_length) > len(body):
            raise InvalidRequest(
                f"Inference-Header-Content-Length is {header_length!r}; the body has "
                f"{len(body)} bytes"
            )
        length = int(header_length)
        header, binary = body[:length], memoryview(body)[length:]
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as error:
        hint = (
            " (binary data? send Inference-Header-Content-Length)" if header_length is None else ""
        )
        raise InvalidRequest(f"the request is not JSON{hint}: {error}") from None
    doc = _object(doc, "the request")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidRequest("inputs must be a non-empty list of tensors")
    inputs, at = [], 0
    for raw in raw_inputs:
        raw = _object(raw, "an input")
        name = raw.get("name")
        datatype: Any = raw.get("datatype")  # checked by the tensor functions
        shape: Any = raw.get("shape")
        if not isinstance(name, str):
            raise InvalidRequest("an input has no name")
        params = _object(raw.get("parameters"), "input {!r}'s parameters", name)
        size = params.get("binary_data_size")
        if size is None:
            if "data" not in raw:
                raise InvalidRequest(f"input {name!r} has no data (nor binary_data_size)")
            inputs.append(tensor_from_values(name, datatype, shape, raw["data"]))
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidRequest(f"input {name!r}: binary_data_size must be a size >= 0")
        if "data" in raw:
            raise InvalidRequest(f"input {name!r} has both data and binary_data_size")
        if at + size > len(binary):
            raise InvalidRequest(
                f"input {name!r}: binary_data_size {size} runs past the body's binary data "
                f"({len(binary) - at} bytes left)"
            )
        inputs.append(tensor_from_bytes(name, datatype, shape, bytes(binary[at : at + size])))
        at += size
    if at != len(binary):
        raise InvalidRequest(
            f"the body has {len(binary) - at} bytes of binary data beyond the inputs' "
            "binary_data_size"
        )
    return _Parsed(doc, inputs)


def _answer(response: InferResponse, parsed: _Parsed) -> Response:
    outputs, blobs = [], []
    binary, binary_default = parsed.binary, parsed.binary_default
    for tensor in response.outputs:
        output: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,  # a tuple: orjson writes it as a list
        }
        if binary.get(tensor.name, binary_default):
            raw = tensor.to_bytes()
            output["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            output["data"] = tensor.json_data()
        outputs.append(output)
    doc: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id:
        doc["id"] = response.id
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(
        b"".join([header, *blobs]),
        media_type=BINARY,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


def _accepted(submitted: Submitted) -> JSONResponse:
    doc: dict[str, Any] = {
        "model_name": submitted.model_name,
        "model_version": submitted.model_version,
        "tasks": [answer.view() for answer in submitted.tasks],
    }
    if submitted.id:
        doc["id"] = submitted.id
    headers = {}
    if len(submitted.tasks) == 1:
        headers["Location"] = f"/tasks/{submitted.tasks[0].task_id}"
    return JSONResponse(doc, status_code=202, headers=headers)


# Registered last: routes match in order.
@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False)
async def unknown(path: str) -> JSONResponse:
    """Any other path under /v2: the protocol's 404 (not FastAPI's)."""
    return JSONResponse({"error": f"no endpoint /v2/{path}"}, status_code=404)
