"""sleep: waits the requested time without blocking, for fault and load tests."""

from __future__ import annotations

import asyncio

from proto import models_pb2
from workers.base import Model

MAX_SLEEP_MS = 60_000


class SleepModel(Model[models_pb2.SleepRequest, models_pb2.SleepResponse]):
    name = "sleep"
    description = "Sleeps {'ms': n} milliseconds (0..60000) and answers {'slept_ms': n}."
    request_type = models_pb2.SleepRequest
    response_type = models_pb2.SleepResponse
    scale_to_zero = True  # a test and load model: its tasks may wait for a worker to start

    async def process_request(self, request: models_pb2.SleepRequest) -> models_pb2.SleepResponse:
        if not 0 <= request.ms <= MAX_SLEEP_MS:
            raise ValueError(f"ms must be in 0..{MAX_SLEEP_MS}, got {request.ms}")
        await asyncio.sleep(request.ms / 1000)
        return models_pb2.SleepResponse(slept_ms=request.ms)
