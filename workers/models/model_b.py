"""model_b: a digits classifier (scikit-learn's 8x8 digits) run with ONNX Runtime.

The weights are ``weights/digits.onnx``, made by ``python -m workers.models.train_digits``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from proto import models_pb2
from workers.base import Model

WEIGHTS = Path(__file__).parent / "weights" / "digits.onnx"
PIXELS = 64


def onnx_session(path: Path) -> ort.InferenceSession:
    """A session that uses one core and does not spin, so several workers share a machine."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class ModelB(Model[models_pb2.ModelBRequest, models_pb2.ModelBResponse]):
    name = "model_b"
    description = (
        "Classifies an 8x8 digit: {'pixels': [64 floats in 0..1]} -> label, probabilities."
    )
    request_type = models_pb2.ModelBRequest
    response_type = models_pb2.ModelBResponse
    max_batch_size = 32
    max_batch_delay_ms = 0.0  # batch what is already waiting; never delay a request
    mark_running = False  # ~0.1 ms per batch: a task is never seen running anyway
    concurrency = 2  # one batch runs while the last one's results are being stored
    weights: Path = WEIGHTS
    #: A batch of 32 takes ~0.1 ms in ONNX Runtime, less than a hop to a thread and back
    #: (the baseline's same choice, load_testing/): run on the event loop.
    infer_on_loop: bool = True

    async def load(self) -> None:
        self._session = onnx_session(self.weights)

    async def process_request(self, request: models_pb2.ModelBRequest) -> models_pb2.ModelBResponse:
        return (await self.process_batch([request]))[0]

    async def process_batch(
        self, requests: Sequence[models_pb2.ModelBRequest]
    ) -> list[models_pb2.ModelBResponse]:
        pixels = _pixel_rows(requests)
        if self.infer_on_loop:
            labels, probabilities = self._infer(pixels)
        else:
            labels, probabilities = await self.run_in_thread(self._infer, pixels)
        return [
            models_pb2.ModelBResponse(label=label, probabilities=row)
            for label, row in zip(labels.tolist(), probabilities.tolist(), strict=True)
        ]

    def _infer(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels, probabilities = self._session.run(["label", "probabilities"], {"pixels": pixels})
        return labels, probabilities


def _pixel_rows(requests: Sequence[models_pb2.ModelBRequest]) -> np.ndarray:
    """The batch's pixels, one row per request, checked as a whole: a batch with a bad
    request fails, and is then run request by request, so that only that one fails."""
    for request in requests:
        if len(request.pixels) != PIXELS:
            raise ValueError(f"pixels must hold {PIXELS} values, got {len(request.pixels)}")
    count = PIXELS * len(requests)
    values = itertools.chain.from_iterable(request.pixels for request in requests)
    pixels = np.fromiter(values, np.float32, count).reshape(len(requests), PIXELS)
    if not np.all((pixels >= 0.0) & (pixels <= 1.0)):
        raise ValueError("pixels must each be in 0..1 (the data set's 0..16 divided by 16)")
    return pixels
