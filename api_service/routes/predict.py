"""POST /predict/{model}: validate, publish with confirm, record as queued, answer 202."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from api_service.codec import decode_request, task_view
from api_service.responses import JSONResponse
from api_service.state import Gateway, gateway
from inferq.errors import BodyTooLarge, InvalidRequest
from inferq.tasks.state import new_task_id, now_ms
from inferq.tracing import server_span

logger = logging.getLogger(__name__)
router = APIRouter()

TIMEOUT_HEADER = "x-inferq-timeout"
MAX_DEADLINE_S = 86_400
MAX_WAIT_S = 30

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


async def read_body(headers: Mapping[str, str], chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The body, refusing (413) to buffer more than ``limit`` bytes."""
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(
            f"body of {declared} bytes exceeds the limit of {limit} bytes (INFERQ_MAX_BODY_BYTES)"
        )
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds the limit of {limit} bytes (INFERQ_MAX_BODY_BYTES)")
        parts.append(chunk)
    return b"".join(parts)


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
        float, Query(ge=0, le=MAX_WAIT_S, description="Hold up to S seconds for the result")
    ] = 0,
    deadline_s: Annotated[
        float | None,
        Query(alias="timeout", gt=0, le=MAX_DEADLINE_S, description="Deadline, seconds from now"),
    ] = None,
) -> JSONResponse:
    """This route documents the call and words the errors of unusual query strings; the
    requests it understands are served by `api_service.hot_path` before they reach it."""
    return await answer_prediction(gw, model, request.headers, request.stream(), wait, deadline_s)


async def answer_prediction(
    gw: Gateway,
    model: str,
    headers: Mapping[str, str],
    body: AsyncIterator[bytes],
    wait: float,
    deadline_s: float | None,
) -> JSONResponse:
    """Validate, publish with confirm, record as queued; answer 202, or 200 with the
    finished task when it ends within ``wait`` seconds (then no queued record is made: the
    worker's final write holds all of it)."""
    with server_span("POST /predict/{model}", headers, **{"inferq.model": model}) as span:
        entry = await gw.catalog.require_live(model)
        raw = await read_body(headers, body, gw.settings.max_body_bytes)
        message = decode_request(raw, headers.get("content-type", ""), entry.request_class)
        trace_context = span.trace_context
        deadline_s = deadline_s or _header_deadline(headers) or gw.settings.default_deadline_s
        wait = min(wait, gw.settings.max_wait_s)
        task_id = new_task_id()
        # Watched before it is published: its result can come back before the confirm does.
        with gw.waiter.watching(task_id) if wait else contextlib.nullcontext() as done:
            submitted = await gw.submitter.submit(
                entry,
                message,
                deadline_s=deadline_s,
                idempotency_key=headers.get("idempotency-key"),
                trace_context=trace_context,
                task_id=task_id,
                # A waiting request is mostly answered with the final state, which the
                # worker writes whole: its queued record is made only if it is needed.
                record=not wait,
                # Its result can come back before the broker's confirm does.
                finished=done,
            )
            span.span.set_attribute("inferq.task_id", submitted.task_id)
            if logger.isEnabledFor(logging.DEBUG):  # spares building the extra per request
                logger.debug("task accepted", extra={"task_id": submitted.task_id, "model": model})
            if done is not None and submitted.created:
                state = await gw.waiter.wait_watched(
                    task_id, done, wait, pending=True, unrecorded=submitted.unrecorded
                )
            elif not submitted.created:  # an Idempotency-Key named an earlier task
                state = await gw.waiter.wait(submitted.task_id, wait)
            else:
                state = None
    task_id = submitted.task_id
    # The client learns its trace id, to follow the task in the workers' logs.
    answer_headers = {"Location": f"/tasks/{task_id}", "traceparent": trace_context["traceparent"]}
    if state is not None and (state.status.is_final or not submitted.created):
        view = task_view(state, entry.response_class, now_ms())
        gw.recent.record(state)  # for GET /stats (only final states count)
        return JSONResponse(
            view, status_code=200 if state.status.is_final else 202, headers=answer_headers
        )
    accepted = {
        "task_id": task_id,
        "model": model,
        "status": "queued",
        "location": answer_headers["Location"],
    }
    return JSONResponse(accepted, status_code=202, headers=answer_headers)


def _header_deadline(headers: Mapping[str, str]) -> float | None:
    """The ``X-Inferq-Timeout`` header (seconds), the header form of ``?timeout=``."""
    raw = headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1
    if not 0 < seconds <= MAX_DEADLINE_S:
        raise InvalidRequest(f"{TIMEOUT_HEADER} must be seconds in (0, {MAX_DEADLINE_S}]")
    return seconds
