"""The `sleep` model with an unload that takes a while, as freeing a GPU or flushing a cache
can: a request still running once unloading began fails, as it would on a model whose
session is gone."""

from __future__ import annotations

import asyncio

from proto import models_pb2
from workers.models.sleep import SleepModel

UNLOAD_S = 1.5


class SlowUnloadSleep(SleepModel):
    name = "slow_unload_sleep"

    async def load(self) -> None:
        self.loaded = True

    async def unload(self) -> None:
        self.loaded = False
        await asyncio.sleep(UNLOAD_S)

    async def process_request(self, request: models_pb2.SleepRequest) -> models_pb2.SleepResponse:
        response = await super().process_request(request)
        if not self.loaded:
            raise RuntimeError("the model was unloaded while this request ran")
        return response
