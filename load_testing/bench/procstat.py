"""What the harness reads about processes and the machine, from /proc (Linux only; elsewhere
the figures are None): resident memory, CPU time, time spent waiting for a core, who listens
on a port, the CPU model."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
VERSIONS_OF = (
    "inferq", "onnxruntime", "numpy", "fastapi", "starlette", "uvicorn", "uvloop", "httptools",
    "pydantic", "orjson", "protobuf", "aio-pika", "aiormq", "redis", "hiredis", "aiohttp",
)  # fmt: skip


def rss_mib(pid: int) -> float | None:
    """Resident set size (VmRSS) of a live process, in MiB."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float | None:
    """CPU time (user + system) a live process has used so far, in seconds."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def runqueue_wait_s(pid: int) -> float | None:
    """Time a live process's threads have spent runnable but without a core so far (the
    second field of each thread's /proc schedstat), in seconds. On a machine whose cores are
    shared, this is the part of a request's latency spent waiting for its turn."""
    try:
        threads = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return None
    waited_ns, read = 0, False
    for thread in threads:
        try:
            waited_ns += int((thread / "schedstat").read_text().split()[1])
            read = True
        except (OSError, IndexError, ValueError):  # a thread that just ended
            continue
    return waited_ns / 1e9 if read else None


def listening_pid(port: int) -> int | None:
    """The process listening on a local TCP port (say RabbitMQ's), or None if unknown."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for fd_dir in PROC.glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except OSError:
            continue
    return None


def cpu_model() -> str:
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, object]:
    versions: dict[str, str | None] = {}
    for name in VERSIONS_OF:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "memory_mib": _memory_mib(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
    }


def _memory_mib() -> float | None:
    try:
        first = (PROC / "meminfo").read_text().splitlines()[0]  # MemTotal: N kB
        return round(int(first.split()[1]) / 1024, 1)
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu_s() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, all cores together."""
    try:
        fields = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / TICKS_PER_S, total / TICKS_PER_S
