"""What every measurement shares: the machine's context before a run (cores, versions, the
background load, the shared RabbitMQ and Redis servers) and one closed-loop load run against
running servers, as a row (throughput, latency percentiles, errors, CPU, RSS)."""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
import uvloop

from inferq.redis_client import connect_redis
from inferq.settings import CommonSettings
from load_testing.bench import procstat
from load_testing.bench.loadgen import run_load
from load_testing.bench.stack import System
from load_testing.bench.workloads import Workload

IDLE_PROBE_S = 2.0
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
Say = Callable[[str], None]


@dataclass(frozen=True)
class Timing:
    duration_s: float = 10.0
    warmup_s: float = 2.0
    wait_s: float = 10.0  # ?wait= of the wait and poll modes
    interval_s: float = 0.02  # the interval mode's polling period


@dataclass(frozen=True)
class Context:
    """The machine as a run found it; every result file carries it."""

    machine: dict[str, Any]
    services: dict[str, int]  # PIDs of the local RabbitMQ and Redis servers
    idle: dict[str, Any]

    @classmethod
    def probe(cls, say: Say) -> Context:
        services = shared_services()
        machine = {**procstat.machine_info(), "services": service_versions()}
        idle = idle_probe(services)
        say(
            f"{machine['cores']} cores ({machine['cpu_model']}), load average "
            f"{machine['load_average_at_start']}; before the run, with nothing of ours running, "
            f"{idle.get('machine_busy_cores', '?')} cores were busy"
        )
        return cls(machine, services, idle)

    def as_json(self) -> dict[str, Any]:
        return {"machine": self.machine, "shared_services": self.services, "idle_probe": self.idle}


def measure(
    servers: System,
    workload: Workload,
    mode: str,
    clients: int,
    timing: Timing,
    services: dict[str, int],
    say: Say,
    counters: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """One load run against running ``servers``. ``counters`` (if given) is read at the start
    and the end of the measured window; the row's ``counters`` are their differences."""
    pids = {**servers.pids(), "loadgen": os.getpid(), **services}

    def probe() -> tuple[
        dict[str, float | None],
        tuple[float, float] | None,
        dict[str, float],
        dict[str, float | None],
    ]:
        return (
            *cpu_probe(pids),
            counters() if counters else {},
            {name: procstat.runqueue_wait_s(pid) for name, pid in pids.items()},
        )

    say(f"{servers.system} {workload.model} {mode}, {clients} client(s), {timing.duration_s:g} s")
    started = time.monotonic()
    load = uvloop.run(
        run_load(
            servers.url,
            mode,
            clients,
            timing.duration_s,
            timing.warmup_s,
            workload,
            wait_s=timing.wait_s,
            interval_s=timing.interval_s,
            probe=probe,
        )
    )
    row: dict[str, Any] = {"system": servers.system, "mode": mode, "clients": clients}
    row.update(load.summary())
    row["rss_mib"] = {name: procstat.rss_mib(pid) for name, pid in servers.pids().items()}
    row["rss_mib"]["loadgen"] = procstat.rss_mib(os.getpid())
    row.update(cpu_usage(load.probe_start, load.probe_end, timing.duration_s, load.completed))
    if load.probe_start and load.probe_end:
        row["runqueue_wait_ms_per_request"] = per_request_ms(
            load.probe_start[3], load.probe_end[3], load.completed
        )
    if counters and load.probe_start and load.probe_end:
        before, after = load.probe_start[2], load.probe_end[2]
        row["counters"] = {k: after[k] - before[k] for k in after.keys() & before.keys()}
    row["elapsed_s"] = round(time.monotonic() - started, 2)
    say(
        f"  {row['throughput_rps']:.0f}/s, p50 {row['p50_ms']:.2f} ms, "
        f"p99 {row['p99_ms']:.2f} ms, {row['errors']} error(s)"
    )
    return row


def idle_probe(services: dict[str, int], seconds: float = IDLE_PROBE_S) -> dict[str, Any]:
    """CPU in use before anything of ours runs: the machine's background load, and what the
    shared RabbitMQ and Redis burn when idle (the rows' figures include both)."""

    start = cpu_probe(services)
    time.sleep(seconds)
    cpu = cpu_usage(start, cpu_probe(services), seconds, 0)
    return {
        "seconds": seconds,
        "cpu_cores": cpu.get("cpu_cores"),
        "machine_busy_cores": cpu.get("machine_busy_cores"),
    }


def cpu_probe(pids: Mapping[str, int]) -> tuple[dict[str, float | None], Any]:
    """CPU seconds by process so far, and `procstat.machine_cpu_s`: `cpu_usage`'s ends."""
    return {name: procstat.cpu_s(pid) for name, pid in pids.items()}, procstat.machine_cpu_s()


def cpu_usage(start: Any, end: Any, window_s: float, completed: int) -> dict[str, Any]:
    """Cores each process kept busy in the window, and its CPU milliseconds per request.
    ``start`` and ``end`` are (CPU seconds by process, `procstat.machine_cpu_s`, ...)."""
    if start is None or end is None:
        return {}
    (before, machine_before), (after, machine_after) = start[:2], end[:2]
    cores = {
        name: round((t1 - t0) / window_s, 3)
        for name, t0 in before.items()
        if t0 is not None and (t1 := after.get(name)) is not None
    }
    out: dict[str, Any] = {
        "cpu_cores": cores,
        "cpu_ms_per_request": per_request_ms(before, after, completed),
    }
    if machine_before and machine_after:
        busy = (machine_after[0] - machine_before[0]) / window_s
        out["machine_busy_cores"] = round(busy, 3)
        # Whatever else ran on the machine meanwhile (other users, the kernel, ...).
        out["other_busy_cores"] = round(max(0.0, busy - sum(cores.values())), 3)
    return out


def per_request_ms(
    before: Mapping[str, float | None], after: Mapping[str, float | None], completed: int
) -> dict[str, float | None]:
    """Milliseconds per request of a per-process counter of seconds (CPU time, run-queue
    wait) over a window; None for each process when no request completed. Processes not
    read at both ends are left out."""
    return {
        name: round(1000 * (t1 - t0) / completed, 3) if completed else None
        for name, t0 in before.items()
        if t0 is not None and (t1 := after.get(name)) is not None
    }


def service_versions() -> dict[str, str | None]:
    """The RabbitMQ and Redis server versions, for the record (None if unreachable)."""
    settings = CommonSettings()

    async def ask() -> dict[str, str | None]:
        versions: dict[str, str | None] = {"rabbitmq": None, "redis": None}
        try:
            connection = await aio_pika.connect(settings.amqp_url, timeout=5)
            async with connection:
                if connection.transport is not None:
                    properties = connection.transport.connection.server_properties
                    versions["rabbitmq"] = str(properties.get("version"))
        except Exception:  # noqa: BLE001 - the version is informative only
            pass
        redis = connect_redis(settings.redis_url)
        try:
            versions["redis"] = str((await redis.info("server")).get("redis_version"))
        except Exception:  # noqa: BLE001 - the version is informative only
            pass
        finally:
            await redis.aclose()
        return versions

    return uvloop.run(ask())


def shared_services() -> dict[str, int]:
    """PIDs of the RabbitMQ and Redis servers, when they run here, to count their CPU time.
    They are shared: anything else using them in the window is counted too."""
    settings = CommonSettings()
    found = {}
    for name, url, default_port in (
        ("rabbitmq", settings.amqp_url, 5672),
        ("redis", settings.redis_url, 6379),
    ):
        parts = urllib.parse.urlsplit(url)
        if parts.hostname in LOOPBACK:
            pid = procstat.listening_pid(parts.port or default_port)
            if pid is not None:
                found[name] = pid
    return found
