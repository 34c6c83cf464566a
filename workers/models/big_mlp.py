"""big_mlp: a 10.8M-parameter MLP over the digits' 64 pixels, for batching benchmarks.

Same messages and graph contract as model_b, but heavy enough that batching pays: one run
costs about as much for 8 requests as for 1. Its weights are random but fixed (seed 0) and are
not committed (43 MB): the first worker to load it generates them with
``python -m workers.models.make_big_mlp`` (needs the ``onnx`` package of requirements-dev).
"""

from __future__ import annotations

import logging
from pathlib import Path

from workers.models.model_b import ModelB

logger = logging.getLogger(__name__)


class BigMLP(ModelB):
    name = "big_mlp"
    description = "A 10.8M-parameter MLP (random fixed weights) for batching benchmarks."
    max_batch_size = 64
    max_batch_delay_ms = 2.0
    weights = Path(__file__).parent / "weights" / "big_mlp.onnx"
    # A batch takes milliseconds: in the worker's thread, seen running, one batch at a time.
    infer_on_loop = False
    mark_running = True
    concurrency = 1
    scale_to_zero = True  # a benchmark model: its tasks may wait for a worker to start

    async def load(self) -> None:
        if not self.weights.exists():
            from workers.models import make_big_mlp

            logger.info("generating %s", self.weights)
            make_big_mlp.main(["--out", str(self.weights)])
        await super().load()
