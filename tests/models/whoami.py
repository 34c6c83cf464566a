"""Answers each request with who sent it, as the worker shows it to the model
(`workers.context`): ``"<data> from <key name> (<key id>)"``, or ``"... from anonymous"``.
Batches of up to 8, so the callers of one batch are told apart."""

from __future__ import annotations

from proto import models_pb2
from workers import Model
from workers.context import caller


class WhoAmI(Model[models_pb2.ModelARequest, models_pb2.ModelAResponse]):
    name = "whoami"
    request_type = models_pb2.ModelARequest
    response_type = models_pb2.ModelAResponse
    max_batch_size = 8
    max_batch_delay_ms = 20.0

    async def process_request(self, request: models_pb2.ModelARequest) -> models_pb2.ModelAResponse:
        who = caller()
        sender = f"{who.name} ({who.key_id})" if who else "anonymous"
        return models_pb2.ModelAResponse(reply=f"{request.data} from {sender}")
