"""model_a: the seed's echo model."""

from __future__ import annotations

from proto import models_pb2
from workers.base import Model


class ModelA(Model[models_pb2.ModelARequest, models_pb2.ModelAResponse]):
    name = "model_a"
    description = "Echoes its input: {'data': 'x'} -> {'reply': 'Processed message: x'}."
    request_type = models_pb2.ModelARequest
    response_type = models_pb2.ModelAResponse

    async def process_request(self, request: models_pb2.ModelARequest) -> models_pb2.ModelAResponse:
        return models_pb2.ModelAResponse(reply=f"Processed message: {request.data}")
