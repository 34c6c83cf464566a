"""The calls clients make by the thousand, served by the front door without FastAPI:
``POST /predict/{model}``, ``GET /tasks/{task_id}`` and the Open Inference Protocol's
``POST /v2/models/{model}[/versions/{version}]/infer`` (`api_service.routes.v2.hot_infer`).
Each turns the HTTP request into a call of the gateway core and its answer into JSON; their
OpenAPI entries are in `api_service.openapi` (the infer's: its FastAPI routes in `v2`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import Scope

from api_service.core.gateway import Caller, Gateway, PredictRequest
from api_service.request_body import RequestBody
from api_service.responses import JSONResponse
from api_service.routes import v2
from inferq.errors import BodyTooLarge, InvalidRequest

TIMEOUT_HEADER = "x-inferq-timeout"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    scope: Scope
    path_param: str  # the model or task id the path names (`HotRoute.param`)
    headers: dict[str, str]
    body: RequestBody | None
    max_body_bytes: int
    trace_context: dict[str, str]
    caller: Caller | None

    def query(self, *names: str) -> dict[str, float]:
        """The query's numbers, by name (others are ignored, as FastAPI's routes do); a
        422 naming a parameter that is not a number."""
        raw = self.scope["query_string"]
        if not raw:
            return {}
        text = raw.decode("latin-1")
        # Plain "wait=2&timeout=30" needs no unquoting; anything escaped takes parse_qsl.
        pairs = (
            [pair.partition("=")[::2] for pair in text.split("&") if pair]
            if "%" not in text and "+" not in text
            else parse_qsl(text, keep_blank_values=True)
        )
        values = {}
        for name, value in pairs:
            if name not in names:
                continue
            try:
                values[name] = float(value)
            except ValueError:
                raise InvalidRequest(f"{name} must be a number of seconds, not {value!r}") from None
        return values

    async def read_body(self) -> bytes:
        """The body, refusing (413) to buffer more than the limit."""
        limit = self.max_body_bytes
        declared = self.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(
                f"body of {declared} bytes exceeds the limit of {limit} bytes "
                "(INFERQ_MAX_BODY_BYTES)"
            )
        if self.body is None:
            return b""
        parts, size = [], 0
        async for chunk in self.body.chunks():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(
                    f"body exceeds the limit of {limit} bytes (INFERQ_MAX_BODY_BYTES)"
                )
            parts.append(chunk)
        return b"".join(parts)


Handler = Callable[[Gateway, HttpRequest], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class HotRoute:
    template: str  # for metrics and spans
    handler: Handler
    param: str  # the model or task id in the path
    model: str  # the metrics' model label


async def predict(gateway: Gateway, request: HttpRequest) -> JSONResponse:
    query = request.query("wait", "timeout")
    deadline_s = query.get("timeout")
    if deadline_s is None and TIMEOUT_HEADER in request.headers:
        deadline_s = _header_seconds(request.headers[TIMEOUT_HEADER])
    body = await request.read_body()
    answer = await gateway.predict(
        PredictRequest(
            model=request.path_param,
            body=body,
            content_type=request.headers.get("content-type", ""),
            wait_s=query.get("wait", 0.0),
            deadline_s=deadline_s,
            idempotency_key=request.headers.get("idempotency-key"),
            trace_context=request.trace_context,
            caller=request.caller,
        )
    )
    # 200 with the final state if it ended within the wait; else 202, still pending.
    return JSONResponse(
        answer.view(),
        status_code=200 if answer.finished else 202,
        headers={"Location": f"/tasks/{answer.task_id}"},
    )


async def get_task(gateway: Gateway, request: HttpRequest) -> JSONResponse:
    query = request.query("wait")
    answer = await gateway.task(request.path_param, query.get("wait", 0.0), request.caller)
    return JSONResponse(answer.view())


def _header_seconds(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InvalidRequest(f"{TIMEOUT_HEADER} must be a number of seconds") from None


PREDICT, TASKS = "/predict/", "/tasks/"
V2_MODELS, INFER = "/v2/models/", "/infer"  # the Open Inference Protocol's infer


def match(method: str, path: str) -> HotRoute | None:
    """The hot route of a request, if it is one (one path segment after the prefix)."""
    if method == "POST" and path.startswith(PREDICT):
        model = path[len(PREDICT) :]
        if model and "/" not in model:
            return HotRoute("/predict/{model}", predict, model, model)
    elif method == "POST" and path.startswith(V2_MODELS) and path.endswith(INFER):
        param = path[len(V2_MODELS) : -len(INFER)]  # model, or model/versions/version
        if param and not param.startswith("/"):
            model = param.partition("/")[0]
            template = "/v2/models/{model}/versions/{version}/infer" if "/" in param else ""
            return HotRoute(template or "/v2/models/{model}/infer", v2.hot_infer, param, model)
    elif method == "GET" and path.startswith(TASKS):
        task_id = path[len(TASKS) :]
        if task_id and "/" not in task_id:
            return HotRoute("/tasks/{task_id}", get_task, task_id, "")
    return None
