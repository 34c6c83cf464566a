"""The model host, ``inferq host``: runs the workers of the catalog's deployed versions.

Every ``INFERQ_HOST_POLL_S`` it reads `Catalog.deployments()` and reconciles what runs with
it: a deployed version ``name@N`` gets ``replicas`` processes of ``inferq worker onnx:name@N``.
A surplus worker gets SIGTERM (it drains its in-flight tasks) and SIGKILL if it outlives the
grace period. A worker that exits on its own is started again after a backoff that doubles, up
to 30 s, while its version's workers keep dying young (a missing model file would otherwise be
retried in a tight loop). A catalog that cannot be read (its database is down) is logged and
read again at the next poll; the workers go on running. SIGTERM or SIGINT stops every worker
gracefully, and the host exits 0. Workers' output lines are prefixed with their name,
``digits@3-0``, as `inferq_cli.supervisor` does for ``inferq up``.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from catalog.db import Catalog
from inferq.settings import HostSettings, LogSettings, WorkerSettings
from inferq_cli.roles import INFERQ
from inferq_cli.supervisor import Child, start, stop_processes

log = logging.getLogger(__name__)

#: The longest wait before a worker that keeps dying is started again.
BACKOFF_MAX_S = 30.0
#: A worker that ran this long before it died was no crash loop: the backoff starts over.
STABLE_S = 60.0
#: Log prefixes are padded to this width (``digits@3-0``), so short names line up.
NAME_WIDTH = 12

#: The argv of a worker serving a served name (``digits@3``).
WorkerCommand = Callable[[str], list[str]]


def onnx_worker(ref: str) -> list[str]:
    return [*INFERQ, "worker", f"onnx:{ref}"]


@dataclass
class Replica:
    name: str  # digits@3-0: the version's served name and a slot number
    slot: int
    process: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)
    kill_at: float = 0.0  # once told to stop: when it gets SIGKILL


@dataclass
class Deployed:
    """The workers of one version, and its backoff after crashes."""

    replicas: list[Replica] = field(default_factory=list)
    crashes: int = 0  # in a row, each after less than STABLE_S
    next_start: float = 0.0


class ModelHost:
    """The workers the host runs; `reconcile` brings them to what the catalog asks for."""

    def __init__(self, worker_command: WorkerCommand, grace_s: float) -> None:
        self._command = worker_command
        self._grace_s = grace_s
        self._log_file = LogSettings().file
        self._deployed: dict[str, Deployed] = {}
        self._stopping: list[Replica] = []

    def reconcile(self, wanted: Mapping[str, int]) -> None:
        """Start, stop and restart workers so that version ``ref`` runs ``wanted[ref]``."""
        now = time.monotonic()
        self._reap(now)
        for ref in sorted(self._deployed.keys() | wanted.keys()):
            deployed = self._deployed.setdefault(ref, Deployed())
            want = wanted.get(ref, 0)
            while len(deployed.replicas) > want:
                self._stop(deployed.replicas.pop(), now)
            while len(deployed.replicas) < want and now >= deployed.next_start:
                deployed.replicas.append(self._start(ref))
            if not deployed.replicas and ref not in wanted:
                del self._deployed[ref]

    def stop_all(self) -> None:
        """SIGTERM to every worker; those still running after the grace period get SIGKILL."""
        running = [r.process for d in self._deployed.values() for r in d.replicas]
        stop_processes([*running, *(r.process for r in self._stopping)], self._grace_s)
        self._deployed.clear()
        self._stopping.clear()

    def running(self) -> dict[str, int]:
        """Workers running (not told to stop) per version."""
        return {ref: len(d.replicas) for ref, d in self._deployed.items() if d.replicas}

    def _start(self, ref: str) -> Replica:
        taken = {r.slot for r in [*self._deployed[ref].replicas, *self._stopping]}
        slot = min(set(range(len(taken) + 1)) - taken)
        name = f"{ref}-{slot}"
        log.info("starting %s", name)
        process = start(Child(name, self._command(ref)), NAME_WIDTH, self._log_file)
        return Replica(name, slot, process)

    def _stop(self, replica: Replica, now: float) -> None:
        log.info(
            "stopping %s (not wanted now); it drains for up to %.0fs",
            replica.name,
            self._grace_s,
        )
        replica.process.send_signal(signal.SIGTERM)
        replica.kill_at = now + self._grace_s
        self._stopping.append(replica)

    def _reap(self, now: float) -> None:
        """Forget the workers that exited: a stopped one is done, another one crashed."""
        for replica in list(self._stopping):
            if replica.process.poll() is not None:
                self._stopping.remove(replica)
                log.info("%s stopped (exit code %s)", replica.name, replica.process.returncode)
            elif now >= replica.kill_at:
                log.warning("%s did not stop in %.0fs: killing it", replica.name, self._grace_s)
                replica.process.kill()
        for ref, deployed in self._deployed.items():
            for replica in [r for r in deployed.replicas if r.process.poll() is not None]:
                deployed.replicas.remove(replica)
                lived = now - replica.started
                deployed.crashes = 1 if lived >= STABLE_S else deployed.crashes + 1
                delay = min(BACKOFF_MAX_S, 2.0 ** (deployed.crashes - 1))
                deployed.next_start = now + delay
                log.warning(
                    "%s exited with %s after %.0fs; the next start of %s in %.0fs",
                    replica.name,
                    replica.process.returncode,
                    lived,
                    ref,
                    delay,
                )


def run_model_host(worker_command: WorkerCommand = onnx_worker) -> int:
    settings = HostSettings()
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    # The workers read the same environment: give them their own grace and a little more.
    host = ModelHost(worker_command, grace_s=WorkerSettings().grace_period_s + 5)
    where = make_url(settings.catalog_url).render_as_string(hide_password=True)
    log.info("model host: reading the deployments in %s every %ss", where, settings.host_poll_s)
    catalog: Catalog | None = None
    wanted: dict[str, int] = {}
    readable = True
    try:
        while not stop.is_set():
            try:
                catalog = catalog or Catalog.open(settings.catalog_url)
                wanted = {d.ref: d.replicas for d in catalog.deployments()}
                if not readable:
                    log.info("the catalog can be read again")
                readable = True
            except (SQLAlchemyError, OSError) as error:
                if readable:
                    reason = str(error).splitlines()[0]
                    log.warning("cannot read the catalog (%s); the workers keep running", reason)
                readable = False
            host.reconcile(wanted)
            stop.wait(settings.host_poll_s)
        log.info("stopping all workers")
    finally:
        host.stop_all()
        if catalog is not None:
            catalog.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
