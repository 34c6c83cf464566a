"""``inferq.v1.InferqService``: the queue's verbs over gRPC, on `Gateway.predict` and
`Gateway.task` (submit, read a task, watch it to its end)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from api_service.core.gateway import Gateway, PredictRequest, TaskAnswer
from api_service.grpc.door import current_call
from inferq.tasks.outcomes import DEADLINE_EXCEEDED
from inferq.tasks.state import TaskStatus, now_ms
from proto import inferq_service_pb2 as pb
from proto import inferq_service_pb2_grpc as pb_grpc

#: How long one read of a watched task waits for its end before looking again: a change of
#: status other than the end (queued -> running) shows within this.
WATCH_POLL_S = 1.0


class InferqService(pb_grpc.InferqServiceServicer):  # type: ignore[misc]
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def Submit(self, request: pb.SubmitRequest, context: grpc.aio.ServicerContext) -> pb.Task:
        call = current_call()
        if request.WhichOneof("body") == "request_json":
            body, content_type = request.request_json.encode(), "application/json"
        else:  # binary protobuf; none given: the request message with every field unset
            body, content_type = request.request, "application/x-protobuf"
        answer = await self.gateway.predict(
            PredictRequest(
                model=request.model,
                body=body,
                content_type=content_type,
                wait_s=request.wait_s,
                deadline_s=request.deadline_s or None,
                idempotency_key=request.idempotency_key or None,
                trace_context=call.trace_context,
                caller=call.caller,
            )
        )
        return task_message(answer)

    async def GetTask(
        self, request: pb.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.Task:
        caller = current_call().caller
        return task_message(await self.gateway.task(request.task_id, request.wait_s, caller))

    async def WatchTask(
        self, request: pb.WatchTaskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Task]:
        caller = current_call().caller
        answer = await self.gateway.task(request.task_id, caller=caller)
        last = ""
        while True:
            task = task_message(answer)
            if task.status != last:
                yield task
                last = task.status
            if TaskStatus(task.status).is_final:
                return
            answer = await self.gateway.task(request.task_id, WATCH_POLL_S, caller)


def task_message(answer: TaskAnswer) -> pb.Task:
    """The task as the gRPC door shows it: what the JSON task view says, with the result as
    the model's binary response message."""
    state = answer.state
    if state is None:  # accepted, still queued
        return pb.Task(task_id=answer.task_id, model=answer.model, status="queued")
    status = state.status
    if status is TaskStatus.QUEUED and state.is_past_deadline(now_ms()):
        status = TaskStatus.EXPIRED  # no worker will run it now (as the JSON view says)
    task = pb.Task(
        task_id=state.task_id,
        model=state.model,
        status=status.value,
        created_at_ms=state.created_at_ms,
        started_at_ms=state.started_at_ms or 0,
        finished_at_ms=state.finished_at_ms or 0,
        deadline_ms=state.deadline_ms,
        worker_id=state.worker_id or "",
        attempts=state.attempts,
    )
    if status is TaskStatus.SUCCEEDED and state.result is not None:
        task.result = state.result
        if answer.response_class is not None:
            task.result_type = answer.response_class.DESCRIPTOR.full_name
    if state.error_type:
        task.error.type = state.error_type
        task.error.message = state.error_message or ""
    elif status is TaskStatus.EXPIRED:
        task.error.type = DEADLINE_EXCEEDED.error_type or ""
        task.error.message = DEADLINE_EXCEEDED.error_message or ""
    return task
