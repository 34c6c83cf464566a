"""Runs real inferq processes (gateway, workers) for integration tests, each test run in its
own namespace so runs sharing one broker and one Redis never meet."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from inferq_cli.supervisor import stop_processes

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """A namespace with its gateway and workers, started as real processes."""

    def __init__(self, namespace: str, log_dir: Path, **env: str) -> None:
        self.namespace = namespace
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            # Every other setting is the product's default: the suite tests what users run,
            # and a test that needs another value says so where it starts its process.
            "INFERQ_NAMESPACE": namespace,
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.url = ""

    def spawn(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "inferq_cli", *args],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def spawn_console(
        self, name: str, *args: str, cwd: Path = ROOT, **env: str
    ) -> subprocess.Popen[bytes]:
        """Runs the ``inferq`` console script as a user does: from ``cwd``, with no
        PYTHONPATH (the harness's own spawns have one)."""
        log = open(self.log_dir / f"{name}-{len(self.processes)}.log", "wb")  # noqa: SIM115
        environment = {k: v for k, v in {**self.env, **env}.items() if k != "PYTHONPATH"}
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "inferq"), *args],
            cwd=cwd,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def start_gateway(self) -> str:
        port = free_port()
        self.spawn("gateway", "gateway", "--port", str(port))
        self.url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _get(f"{self.url}/readyz") == 200, 30, "gateway ready")
        return self.url

    def start_worker(self, target: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        return self.spawn(target.replace(":", "."), "worker", target, *args, **env)

    def wait_live(self, model: str, workers: int = 1, timeout: float = 30) -> None:
        def live() -> bool:
            response = httpx.get(f"{self.url}/models/{model}", timeout=5)
            return response.status_code == 200 and response.json()["live_workers"] >= workers

        wait_until(live, timeout, f"{workers} live worker(s) of {model}")

    def metric(self, sample: str, **labels: str) -> float:
        """The gateway's current value of one Prometheus sample (``name_total``, ``name_count``
        ...) summed over the series whose labels include ``labels``; 0 while none exists. A
        test on the shared gateway compares it before and after its own requests."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == sample and labels.items() <= s.labels.items()
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.log_dir.glob("*.log"))
        )

    def stop(self) -> None:
        stop_processes(self.processes, grace_s=15)


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def iter_namespaces(prefix: str = "test") -> Iterator[str]:
    while True:
        yield f"{prefix}-{os.urandom(4).hex()}"
