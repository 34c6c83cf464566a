"""The model host (`inferq host`): it runs the catalog's deployed versions as real
``inferq worker onnx:NAME@N`` processes, follows replica changes, restarts a killed worker,
outlives its database going down, and stops everything on SIGTERM. The catalog is on the real
PostgreSQL (a schema of the test's own), the workers on the real RabbitMQ and Redis."""

from __future__ import annotations

import hashlib
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa

from catalog.db import Catalog
from catalog.files import open_model_files
from catalog.onnx_check import check_model
from catalog.records import VersionMetadata
from inferq.settings import CatalogSettings
from inferq_cli.host import ModelHost
from tests.catalog.databases import POSTGRES, postgres_schema
from tests.conftest import new_namespace
from tests.faults.probes import pid_of
from tests.faults.proxy import TcpProxy
from tests.models.onnx_graphs import doubler
from tests.stack import Stack, wait_until

MODEL = "double"
SERVED = f"{MODEL}@1"



def store(catalog_url: str, store_url: str, data: bytes) -> int:
    """Stores ``data`` as the next version of MODEL, as an upload does; returns its number."""
    signature = check_model(data, CatalogSettings())
    key = open_model_files(store_url).put(data)
    with Catalog.open(catalog_url) as catalog:
        version = catalog.add_version(
            MODEL,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            file_key=key,
            signature=signature.to_json(),
            metadata=VersionMetadata("y = 2x"),
        )
    return version.number


def predict(stack: Stack) -> dict[str, Any]:
    """One prediction through the gateway, checked; the finished task."""
    response = httpx.post(
        f"{stack.url}/predict/{SERVED}", params={"wait": 10}, json={"x": [1.0, 2.5, -3.0]}
    )
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    assert task["result"] == {"y": [2.0, 5.0, -6.0]}
    return task


def set_replicas(catalog_url: str, replicas: int, number: int = 1) -> None:
    with Catalog.open(catalog_url) as catalog:
        catalog.set_replicas(MODEL, number, replicas)


def workers_of(host: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The host's worker processes that have not exited."""
    try:
        children = psutil.Process(host.pid).children()
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if _alive(c)]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A catalog URL on the real PostgreSQL, in a schema of its own, dropped after."""
    with postgres_schema("test_host") as url:
        yield url


@pytest.fixture
def database() -> Iterator[TcpProxy]:
    """A proxy in front of PostgreSQL: the host reaches its database through it, so the test
    can take the database down (`TcpProxy.block`) and bring it back."""
    proxy = TcpProxy(sa.make_url(POSTGRES).port or 5432).start()
    try:
        yield proxy
    finally:
        proxy.close()


def test_the_host_runs_the_deployed_replicas_and_follows_the_catalog(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, database: TcpProxy
) -> None:
    namespace = new_namespace()
    with Stack(
        namespace, tmp_path_factory.mktemp(namespace), INFERQ_CATALOG_URL=postgres_url
    ) as stack:
        store_url = stack.env["INFERQ_MODEL_STORE_URL"]
        assert store(postgres_url, store_url, doubler()) == 1
        set_replicas(postgres_url, 2)
        stack.start_gateway()
        host = stack.spawn(
            "host", "host", INFERQ_HOST_POLL_S="0.5", INFERQ_CATALOG_URL=database.url(postgres_url)
        )

        # Deployed with 2 replicas: 2 live workers, which answer.
        stack.wait_live(SERVED, 2, timeout=90, watch=[host])
        first = workers_of(host)
        assert len(first) == 2
        assert pid_of(predict(stack)["worker_id"]) in {w.pid for w in first}
        assert all(f"onnx:{SERVED}" in w.cmdline() for w in first)

        # 1 replica: one worker is stopped, and its process exits.
        set_replicas(postgres_url, 1)
        stack.wait_for(lambda: len(workers_of(host)) == 1, 60, "one worker left", [host])
        stack.wait_for(lambda: stack.live_workers(SERVED) == 1, 30, "one live worker", [host])
        (kept,) = workers_of(host)
        assert kept.pid in {w.pid for w in first}
        assert sum(_alive(w) for w in first) == 1

        # A killed worker is replaced.
        kept.kill()
        stack.wait_for(
            lambda: {w.pid for w in workers_of(host)} - {kept.pid},
            30,
            "a worker in place of the killed one",
            [host],
        )
        (replacement,) = workers_of(host)
        assert pid_of(predict(stack)["worker_id"]) == replacement.pid  # it serves

        # The database goes down: the host says so and keeps its worker; it comes back.
        database.block()
        stack.wait_for(
            lambda: "cannot read the catalog" in stack.log_of(host), 30, "the outage logged", [host]
        )
        time.sleep(1)  # a few polls without a catalog
        assert [w.pid for w in workers_of(host)] == [replacement.pid]
        database.restore()
        stack.wait_for(
            lambda: "can be read again" in stack.log_of(host), 30, "the recovery logged", [host]
        )

        # Undeployed: no worker left, none live.
        set_replicas(postgres_url, 0)
        stack.wait_for(lambda: not workers_of(host), 60, "no worker left", [host])
        assert not _alive(replacement)
        stack.wait_for(lambda: stack.live_workers(SERVED) == 0, 30, "no live worker", [host])

        # SIGTERM: the host stops its worker gracefully and exits 0.
        set_replicas(postgres_url, 1)
        stack.wait_live(SERVED, 1, timeout=60, watch=[host])
        (last,) = workers_of(host)
        host.send_signal(signal.SIGTERM)
        assert host.wait(60) == 0, stack.log_of(host)
        psutil.wait_procs([last], timeout=10)
        assert not _alive(last)
        assert "stopping all workers" in stack.log_of(host)


def test_a_worker_that_dies_at_once_is_restarted_with_a_growing_backoff(
    stack: Stack,
) -> None:
    """A version whose file is gone from the store: each worker exits at start; the host logs
    it and waits 1 s, 2 s, 4 s ... before the next one, instead of spinning."""
    catalog_url = stack.env["INFERQ_CATALOG_URL"]
    store(catalog_url, stack.env["INFERQ_MODEL_STORE_URL"], doubler())
    for path in Path(stack.env["INFERQ_MODEL_STORE_URL"]).rglob("*.onnx"):
        path.unlink()
    set_replicas(catalog_url, 1)
    host = stack.spawn("host", "host", INFERQ_HOST_POLL_S="0.2")
    stack.wait_for(
        lambda: stack.log_of(host).count(f"starting {SERVED}-0") >= 3, 30, "3 starts", [host]
    )
    time.sleep(3)
    log = stack.log_of(host)
    # Started at ~0 s, ~1 s, ~3 s, ~7 s: at most 4 in the ~3 s past the third start.
    assert log.count(f"starting {SERVED}-0") <= 4, log
    assert "the next start of double@1 in 1s" in log
    assert "the next start of double@1 in 2s" in log
    host.send_signal(signal.SIGINT)  # as Ctrl-C: stops as SIGTERM does
    assert host.wait(30) == 0


# -- the reconciler alone, with stand-in worker commands ------------------------------------


def sleeper(ready_dir: Path, *, ignore_sigterm: bool = False) -> list[str]:
    """A stand-in worker: touches a file named after its pid, then sleeps."""
    code = (
        "import os, signal, time\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_sigterm else "")
        + f"open(os.path.join({str(ready_dir)!r}, str(os.getpid())), 'w').close()\n"
        + "time.sleep(120)\n"
    )
    return [sys.executable, "-c", code]


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="inferq_cli.host")
    host = ModelHost(lambda ref: sleeper(tmp_path, ignore_sigterm=True), grace_s=1.0)
    try:
        host.reconcile({"m@1": 2})
        wait_until(lambda: len(list(tmp_path.iterdir())) == 2, 10, "2 stand-ins ready")
        assert host.running() == {"m@1": 2}
        host.reconcile({"m@1": 1})
        assert host.running() == {"m@1": 1}
        time.sleep(0.5)
        host.reconcile({"m@1": 1})
        assert "did not stop" not in caplog.text  # still within its grace period
        time.sleep(0.7)
        host.reconcile({"m@1": 1})
        assert "m@1-1 did not stop in 1s: killing it" in caplog.text
        time.sleep(0.2)
        host.reconcile({"m@1": 1})
        assert "m@1-1 stopped (exit code -9)" in caplog.text
        alive = [int(p.name) for p in tmp_path.iterdir() if psutil.pid_exists(int(p.name))]
        assert len(alive) == 1
    finally:
        host.stop_all()
    assert host.running() == {}


def test_a_new_replica_takes_a_name_no_draining_one_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Names are slots: m@1-0, m@1-1 ...; one that drains keeps its name (and log file)."""
    caplog.set_level(logging.INFO, logger="inferq_cli.host")
    host = ModelHost(lambda ref: sleeper(tmp_path, ignore_sigterm=True), grace_s=0.5)
    try:
        host.reconcile({"m@1": 2, "n@2": 1})
        host.reconcile({"m@1": 1})  # m@1-1 drains; n@2 is undeployed
        host.reconcile({"m@1": 2})
        assert host.running() == {"m@1": 2}
        started = [line for line in caplog.messages if line.startswith("starting")]
        assert started == ["starting m@1-0", "starting m@1-1", "starting n@2-0", "starting m@1-2"]
    finally:
        host.stop_all()
    assert host.running() == {}
