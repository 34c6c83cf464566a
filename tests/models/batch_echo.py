"""Echoes each request with the size of the batch it ran in; "boom" makes a batch raise."""

from __future__ import annotations

from collections.abc import Sequence

from proto import models_pb2
from workers import Model


class BatchEcho(Model[models_pb2.ModelARequest, models_pb2.ModelAResponse]):
    name = "batch_echo"
    request_type = models_pb2.ModelARequest
    response_type = models_pb2.ModelAResponse
    max_batch_size = 8
    max_batch_delay_ms = 50.0

    async def process_batch(
        self, requests: Sequence[models_pb2.ModelARequest]
    ) -> list[models_pb2.ModelAResponse]:
        if any(request.data == "boom" for request in requests):
            raise ValueError("boom")
        size = len(requests)
        return [models_pb2.ModelAResponse(reply=f"{r.data} batch={size}") for r in requests]
