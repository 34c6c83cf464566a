"""Models that misbehave on purpose, served by real worker processes in the fault tests
(``inferq worker tests.faults.models:PoisonModel``).

They speak the `sleep` model's messages: ``{"ms": n}`` sleeps n ms and answers
``{"slept_ms": n}``, except for two poison inputs.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence

from proto import models_pb2
from workers.base import Model

RAISE = -1  # the model raises ValueError
CRASH = -2  # the model kills its own process (SIGKILL), as a segfault or the OOM killer would


class PoisonModel(Model[models_pb2.SleepRequest, models_pb2.SleepResponse]):
    name = "poison"
    description = "Sleeps {'ms': n}; ms=-1 raises, ms=-2 kills the worker."
    request_type = models_pb2.SleepRequest
    response_type = models_pb2.SleepResponse

    async def process_request(self, request: models_pb2.SleepRequest) -> models_pb2.SleepResponse:
        if request.ms == RAISE:
            raise ValueError("poisoned input: ms=-1")
        if request.ms == CRASH:
            os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.sleep(max(request.ms, 0) / 1000)
        return models_pb2.SleepResponse(slept_ms=request.ms)


class PoisonBatchModel(PoisonModel):
    """The same, served in batches: one poisoned request must fail only its own task."""

    name = "poison_batch"
    max_batch_size = 8
    max_batch_delay_ms = 200

    async def process_batch(
        self, requests: Sequence[models_pb2.SleepRequest]
    ) -> list[models_pb2.SleepResponse]:
        return list(await asyncio.gather(*(self.process_request(r) for r in requests)))
