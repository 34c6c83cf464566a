"""The suite's inferq processes (`load_testing.processes`), each test in a namespace of its own,
with what only tests use: the console script and the gateway's metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from load_testing.processes import ROOT, Popen, Processes, free_port, wait_until

__all__ = ["ROOT", "Stack", "free_port", "wait_until"]


class Stack(Processes):
    """A namespace with its gateway and workers, started as real processes. Every setting but
    ``env`` is the product's default: the suite tests what users run, and a test that needs
    another value says so where it starts its process."""

    namespace: str

    def __init__(self, namespace: str, log_dir: Path, **env: str) -> None:
        super().__init__(namespace, log_dir, env=env)

    def spawn_console(self, name: str, *args: str, cwd: Path = ROOT, **env: str) -> Popen:
        """Runs the ``inferq`` console script as a user does: from ``cwd``, with no
        PYTHONPATH (the harness's own spawns have one)."""
        environment = {k: v for k, v in {**self.env, **env}.items() if k != "PYTHONPATH"}
        console = str(Path(sys.executable).parent / "inferq")
        return self.launch(name, [console, *args], environment, cwd)

    def metric(self, sample: str, **labels: str) -> float:
        """The gateway's current value of one Prometheus sample (``name_total``, ``name_count``
        ...) summed over the series whose labels include ``labels``; 0 while none exists. A
        test on the shared gateway compares it before and after its own requests."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        text = httpx.get(f"{self.url}/metrics", timeout=5, headers=headers).text
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == sample and labels.items() <= s.labels.items()
        )
