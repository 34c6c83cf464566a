"""The systems under test, as context managers that start them, wait until they serve and tear
them down: the inferq stack (a gateway and workers of one model, in a namespace of their own)
and the baseline (one plain FastAPI process)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from load_testing.processes import ROOT, Popen, Processes, free_port, get_json

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class System(Processes):
    system = ""

    def start(self) -> None:
        raise NotImplementedError

    def pids(self) -> dict[str, int]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self


class Baseline(System):
    """model_b in one plain FastAPI process (`load_testing.bench.baseline`)."""

    system = "baseline"

    def __init__(self, log_dir: Path, infer: str = "inline") -> None:
        super().__init__(None, log_dir)
        self.infer = infer

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = ["-m", "load_testing.bench.baseline", "--port", str(port), "--infer", self.infer]
        app = self.launch("baseline", [sys.executable, *argv], self.env)
        self.wait_for(
            lambda: get_json(f"{self.url}/healthz") is not None,
            START_TIMEOUT_S,
            "the baseline",
            [app],
        )

    def pids(self) -> dict[str, int]:
        return {"baseline": self.processes[0].pid}


class InferqStack(System):
    """One inferq gateway and ``workers`` workers of ``model`` from the checkout ``root``, in a
    fresh namespace; ``env`` goes to all of them. With ``metrics``, each worker serves its
    Prometheus metrics on a port of its own (`metrics_ports`)."""

    system = "inferq"

    def __init__(
        self,
        log_dir: Path,
        workers: int = 1,
        model: str = "model_b",
        metrics: bool = False,
        root: Path = ROOT,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"bench-{os.urandom(4).hex()}", log_dir, root, env)
        self.model = model
        self.metrics = metrics
        self.metrics_ports: dict[str, int] = {}
        self.worker_count = workers
        self.workers: list[Popen] = []

    def start(self) -> None:
        self.start_gateway(START_TIMEOUT_S)
        # The others once the first consumes (load_testing/README.md: RabbitMQ 3.10 and
        # quorum queues).
        for count in (1, self.worker_count):
            while len(self.workers) < count:
                self._start_worker()
            self.wait_live(self.model, count, START_TIMEOUT_S, self.processes)

    def _start_worker(self) -> None:
        name, env = f"worker-{len(self.workers)}", {}
        if self.metrics:
            self.metrics_ports[name] = port = free_port()
            env["INFERQ_METRICS_PORT"] = str(port)
        self.workers.append(self.start_worker(self.model, **env))

    def pids(self) -> dict[str, int]:
        workers = {f"worker-{i}": worker.pid for i, worker in enumerate(self.workers)}
        return {"gateway": self.processes[0].pid, **workers}

    def describe(self) -> dict[str, Any]:
        """``GET /models/{model}`` (live workers, queue depth, ...); {} if it does not answer."""
        return get_json(f"{self.url}/models/{self.model}") or {}

    def close(self, models: Sequence[str] = (), grace_s: float = STOP_TIMEOUT_S) -> None:
        super().close([self.model, *models], grace_s)
