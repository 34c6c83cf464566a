"""The systems under test, started as real processes: the inferq stack (a gateway and workers
of one model, in a namespace of their own on the local RabbitMQ and Redis) and the baseline (one
plain FastAPI process). Each is a context manager that waits until it serves and tears down
after: SIGTERM and wait, then, for inferq, drop the namespace's queues and keys."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from inferq.settings import CommonSettings
from inferq_cli.admin import drop_namespace
from inferq_cli.supervisor import stop_processes

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Servers:
    """Named child processes serving HTTP on ``url``; their logs go to ``log_dir``. They run
    the code of ``root`` (this checkout unless told otherwise: `compare` runs two)."""

    system = ""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None, root: Path = ROOT) -> None:
        self.log_dir = log_dir
        self.root = root
        self.env = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.url = ""

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, *argv],
                cwd=self.root,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=log,
            )
        self.processes[name] = process
        return process

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}):\n{self.logs()}")
            if condition():
                return
            time.sleep(0.1)
        raise TimeoutError(f"timed out after {START_TIMEOUT_S}s waiting for {what}:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        stop_processes(self.processes.values(), grace_s=STOP_TIMEOUT_S)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


class Baseline(Servers):
    """model_b in one plain FastAPI process (`load_testing.bench.baseline`)."""

    system = "baseline"

    def __init__(self, log_dir: Path, infer: str = "inline") -> None:
        super().__init__(log_dir)
        self.infer = infer

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = ["-m", "load_testing.bench.baseline", "--port", str(port), "--infer", self.infer]
        self.spawn("baseline", argv)
        self.wait_until(lambda: _get(f"{self.url}/healthz") is not None, "the baseline")


class InferqStack(Servers):
    """One inferq gateway and ``workers`` workers of ``model``, in a fresh namespace; ``env``
    goes to all of them (e.g. ``{"INFERQ_MAX_BATCH_SIZE": "1"}``). With ``metrics``, each
    worker serves its Prometheus metrics on a port of its own (`metrics_ports`)."""

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
        self.namespace = f"bench-{os.urandom(4).hex()}"
        super().__init__(log_dir, {"INFERQ_NAMESPACE": self.namespace, **(env or {})}, root)
        self.workers = workers
        self.model = model
        self.metrics = metrics
        self.metrics_ports: dict[str, int] = {}

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.spawn("gateway", ["-m", "inferq_cli", "gateway", "--port", str(port)])
        self._spawn_worker(0)
        self.wait_until(lambda: _get(f"{self.url}/readyz") is not None, "the gateway")
        # The others only once the first one consumes: RabbitMQ 3.10 answers a basic.consume
        # that races a quorum queue's start-up with INTERNAL_ERROR ({badmatch,{error,noproc}}
        # in rabbit_quorum_queue:consume/3), and the worker exits.
        self.wait_until(lambda: self._live(1), f"a live {self.model} worker")
        for i in range(1, self.workers):
            self._spawn_worker(i)
        self.wait_until(
            lambda: self._live(self.workers), f"{self.workers} live {self.model} workers"
        )

    def _spawn_worker(self, i: int) -> None:
        """One process per worker (not `--replicas`, whose supervisor would be one more)."""
        env = {}
        if self.metrics:
            self.metrics_ports[f"worker-{i}"] = metrics_port = free_port()
            env["INFERQ_METRICS_PORT"] = str(metrics_port)
        self.spawn(f"worker-{i}", ["-m", "inferq_cli", "worker", self.model], env)

    def _live(self, workers: int) -> bool:
        return int(self.describe().get("live_workers") or 0) >= workers

    def describe(self) -> dict[str, Any]:
        """``GET /models/{model}`` (live workers, queue depth, ...); {} if it does not answer."""
        return _get(f"{self.url}/models/{self.model}") or {}

    def worker_log(self, index: int = 0) -> str:
        return (self.log_dir / f"worker-{index}.log").read_text(errors="replace")

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            settings = CommonSettings(namespace=self.namespace)
            asyncio.run(drop_namespace(settings, [self.model]))


def _get(url: str) -> dict[str, Any] | None:
    """The JSON body of a 200 answer, or None for anything else."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response) if response.status == 200 else None  # type: ignore[no-any-return]
    except (OSError, ValueError, urllib.error.URLError):
        return None
