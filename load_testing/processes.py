"""Starts inferq's processes (the gateway, workers) for the test suite, the bench and the chaos
run: the code of one checkout, in one namespace, each process logging to a file of its own;
stops them with SIGTERM, then SIGKILL once the grace period is over."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx

from inferq.settings import CommonSettings
from inferq_cli.admin import drop_namespace
from inferq_cli.supervisor import stop_processes

ROOT = Path(__file__).resolve().parent.parent
Popen = subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(root: Path) -> list[str]:
    """The argv of a checkout's ``inferq`` command; `bench compare` may run a checkout from
    before the CLI left the ``inferq`` package."""
    module = "inferq_cli" if (root / "inferq_cli").is_dir() else "inferq.cli"
    return [sys.executable, "-m", module]


def get_json(url: str, api_key: str = "") -> Any:
    """The JSON body of a 200 answer; None for any other answer or none. ``api_key``: sent
    as ``Authorization: Bearer`` (a gateway that requires keys)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(url, timeout=2, headers=headers)
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def wait_until(
    condition: Callable[..., object], timeout: float, what: str, watch: Iterable[Popen] = ()
) -> None:
    """Polls ``condition`` until it holds: TimeoutError after ``timeout`` s, RuntimeError as
    soon as a process of ``watch`` has exited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if gone := next((p for p in watch if p.poll() is not None), None):
            raise RuntimeError(f"process {gone.pid} exited ({gone.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Processes:
    """Processes of one namespace (none for ``namespace=None``) running the checkout ``root``;
    ``log_dir/NAME-N.log`` holds the output of the N-th one."""

    def __init__(
        self,
        namespace: str | None,
        log_dir: Path,
        root: Path = ROOT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.namespace = namespace
        # Absolute: the processes may run in another checkout, where a relative path (the
        # settings below) would name a folder that does not exist.
        log_dir = log_dir.resolve()
        self.log_dir = log_dir
        self.root = root
        path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
        # Workers' liveness files go with the logs: a worker killed on purpose leaves its file
        # there, not in the machine's /tmp.
        # The catalog and the model files too: a run never reads or writes the checkout's
        # .inferq/ (where `make up` keeps the user's).
        self.env = {
            **os.environ,
            "PYTHONPATH": path,
            "INFERQ_HEALTH_DIR": str(log_dir),
            "INFERQ_CATALOG_URL": f"sqlite:///{log_dir / 'catalog.db'}",
            "INFERQ_MODEL_STORE_URL": str(log_dir / "models"),
            "INFERQ_MODEL_CACHE_DIR": str(log_dir / "model-cache"),
        }
        self.env.update(env or {})
        if namespace:
            self.env["INFERQ_NAMESPACE"] = namespace
        self.processes: list[Popen] = []
        self.log_files: list[Path] = []
        self.url = ""  # the gateway's, once started
        self.grpc_target = ""  # its gRPC server's host:port
        #: The key the harness's own reads (live workers) send, for a gateway requiring keys.
        self.api_key = ""

    def launch(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> Popen:
        """Runs ``argv`` with exactly ``env``, from ``cwd`` (default: the checkout)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / f"{name}-{len(self.processes)}.log"
        with open(path, "wb") as log:
            process = subprocess.Popen(
                argv, cwd=cwd or self.root, env=dict(env), stdout=log, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        self.log_files.append(path)
        return process

    def spawn(self, name: str, *args: str, **env: str) -> Popen:
        """``inferq ARGS`` of the checkout, with ``env`` on top of `Processes.env`. A gateway
        gets a free gRPC port, as it gets a free HTTP port (the default is one per machine)."""
        env = {**self.env, **env}
        if args[:1] == ("gateway",):
            env.setdefault("INFERQ_GRPC_PORT", str(free_port()))
            self.grpc_target = f"127.0.0.1:{env['INFERQ_GRPC_PORT']}"
        return self.launch(name, [*cli(self.root), *args], env)

    def start_gateway(self, timeout: float = 60) -> str:
        port = free_port()
        gateway = self.spawn("gateway", "gateway", "--port", str(port))
        self.url = f"http://127.0.0.1:{port}"
        ready = f"{self.url}/readyz"
        self.wait_for(lambda: get_json(ready) is not None, timeout, "a ready gateway", [gateway])
        return self.url

    def start_worker(self, target: str, *args: str, **env: str) -> Popen:
        """One worker process (not ``--replicas``, whose supervisor would be one more)."""
        return self.spawn(target.replace(":", "."), "worker", target, *args, **env)

    def live_workers(self, model: str) -> int:
        models = get_json(f"{self.url}/models/{model}", self.api_key) or {}
        return int(models.get("live_workers") or 0)

    def wait_live(
        self, model: str, workers: int = 1, timeout: float = 30, watch: Iterable[Popen] = ()
    ) -> None:
        self.wait_for(
            lambda: self.live_workers(model) >= workers,
            timeout,
            f"{workers} live worker(s) of {model}",
            watch,
        )

    def wait_for(
        self, condition: Callable[[], object], timeout: float, what: str, watch: Iterable[Popen]
    ) -> None:
        """`wait_until`, failing with the logs."""
        try:
            wait_until(condition, timeout, what, watch)
        except (TimeoutError, RuntimeError) as error:
            raise type(error)(f"{error}\n{self.logs()}") from None

    def log_of(self, process: Popen) -> str:
        return self.log_files[self.processes.index(process)].read_text(errors="replace")

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )

    def stop(self, grace_s: float = 15) -> None:
        stop_processes(self.processes, grace_s=grace_s)

    def close(self, models: Sequence[str] = (), grace_s: float = 15) -> None:
        """`stop`, then remove the namespace's queues (those of ``models`` too, registered or
        not) and keys."""
        try:
            self.stop(grace_s)
        finally:
            if self.namespace:
                settings = CommonSettings(namespace=self.namespace)
                asyncio.run(drop_namespace(settings, list(models)))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
