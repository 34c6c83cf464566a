"""POST /predict/{model}: validate, store as queued, publish with confirm, answer 202."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from opentelemetry import trace

from api_service.codec import decode_request, task_view
from api_service.responses import JSONResponse
from api_service.state import Gateway, gateway
from inferq.errors import BodyTooLarge, InvalidRequest
from inferq.tasks import now_ms
from inferq.tracing import extract, inject

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
router = APIRouter()

TIMEOUT_HEADER = "x-inferq-timeout"
MAX_DEADLINE_S = 86_400

REQUEST_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The model's request message: JSON (proto3 JSON mapping; the schema is "
        "in GET /models/{model}) or binary protobuf (Content-Type: application/x-protobuf).",
        "content": {
            "application/json": {"schema": {"type": "object"}, "example": {"data": "example"}},
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) to buffer more than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/predict/{model}",
    status_code=202,
    openapi_extra=REQUEST_BODY_DOC,
    tags=["tasks"],
    summary="Submit a prediction task",
)
async def predict(
    model: str,
    request: Request,
    gw: Annotated[Gateway, Depends(gateway)],
    wait: Annotated[
        float, Query(ge=0, le=30, description="Hold up to S seconds for the result")
    ] = 0,
    deadline_s: Annotated[
        float | None,
        Query(alias="timeout", gt=0, le=MAX_DEADLINE_S, description="Deadline, seconds from now"),
    ] = None,
) -> JSONResponse:
    with _tracer.start_as_current_span(
        "POST /predict/{model}",
        context=extract(request.headers),
        kind=trace.SpanKind.SERVER,
        attributes={"inferq.model": model},
    ) as span:
        entry = await gw.catalog.require_live(model)
        body = await read_body(request, gw.settings.max_body_bytes)
        content_type = request.headers.get("content-type", "")
        message = decode_request(body, content_type, entry.request_class)
        trace_context = dict(inject({}))
        submitted = await gw.submitter.submit(
            entry,
            message,
            deadline_s=deadline_s or _header_deadline(request) or gw.settings.default_deadline_s,
            idempotency_key=request.headers.get("idempotency-key"),
            trace_context=trace_context,
        )
        span.set_attribute("inferq.task_id", submitted.task_id)
        logger.debug("task accepted", extra={"task_id": submitted.task_id, "model": model})
    task_id = submitted.task_id
    # The client learns its trace id, to follow the task in the workers' logs.
    headers = {"Location": f"/tasks/{task_id}", "traceparent": trace_context["traceparent"]}
    if wait or not submitted.created:
        state = await gw.waiter.wait(task_id, min(wait, gw.settings.max_wait_s))
        if state is not None and (state.status.is_final or not submitted.created):
            view = task_view(state, entry.response_class, now_ms())
            gw.recent.record(state)  # for GET /stats (only final states count)
            return JSONResponse(
                view, status_code=200 if state.status.is_final else 202, headers=headers
            )
    accepted = {
        "task_id": task_id,
        "model": model,
        "status": "queued",
        "location": headers["Location"],
    }
    return JSONResponse(accepted, status_code=202, headers=headers)


def _header_deadline(request: Request) -> float | None:
    """The ``X-Inferq-Timeout`` header (seconds), the header form of ``?timeout=``."""
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1
    if not 0 < seconds <= MAX_DEADLINE_S:
        raise InvalidRequest(f"{TIMEOUT_HEADER} must be seconds in (0, {MAX_DEADLINE_S}]")
    return seconds
