"""GET /tasks/{task_id}: the task view, optionally long-polled."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api_service.codec import task_view
from api_service.responses import JSONResponse
from api_service.routes.predict import MAX_WAIT_S
from api_service.state import Gateway, gateway
from inferq.errors import TaskNotFound
from inferq.tasks.state import TaskStatus, now_ms

router = APIRouter()

_TASK_ID = re.compile(r"^[0-9a-f]{32}$")


@router.get("/tasks/{task_id}", tags=["tasks"], summary="A task's status and result")
async def get_task(
    task_id: str,
    gw: Annotated[Gateway, Depends(gateway)],
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_S, description="Hold up to S seconds until final")
    ] = 0,
) -> JSONResponse:
    """This route documents the call and words the errors of unusual query strings; the
    requests it understands are served by `api_service.hot_path` before they reach it."""
    return await answer_task(gw, task_id, wait)


async def answer_task(gw: Gateway, task_id: str, wait: float) -> JSONResponse:
    if not _TASK_ID.match(task_id):
        raise TaskNotFound(f"no task {task_id!r}", task_id=task_id)
    if wait:
        state = await gw.waiter.wait(task_id, min(wait, gw.settings.max_wait_s))
    else:
        state = gw.waiter.finished(task_id) or await gw.store.get(task_id)
    if state is None or state.status is TaskStatus.REJECTED:
        raise TaskNotFound(
            f"no task {task_id!r} (never existed, or its result expired)", task_id=task_id
        )
    entry = await gw.catalog.get(state.model)
    view = task_view(state, entry.response_class if entry else None, now_ms())
    gw.recent.record(state)  # for GET /stats (only final states count)
    return JSONResponse(view)
