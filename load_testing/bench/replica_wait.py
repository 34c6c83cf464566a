"""``python -m load_testing.bench.replica_wait [--tasks N]``: what INFERQ_REDIS_MIN_REPLICAS_ACK=1
costs a worker's final write (`TaskStore.finish`, then Redis WAIT for one replica, in the same
round trip). Runs its own Redis primary and replica on loopback (free ports, a temporary
directory, removed after) and times, with and without the WAIT: one task per write, back to
back (latency); 16 tasks per write (a batch); and 32 writers at once (throughput, as many
workers). Prints a table; touches no other Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from inferq.names import Names
from inferq.redis_client import connect_redis
from inferq.tasks.outcomes import Outcome
from inferq.tasks.state import TaskStatus
from inferq.tasks.store import TaskStore
from load_testing.processes import free_port, wait_until

RESULT = Outcome(TaskStatus.SUCCEEDED, result=b"x" * 64)


@contextmanager
def primary_and_replica() -> Iterator[int]:
    """A primary and its replica; yields the primary's port."""
    program = shutil.which("redis-server") or "redis-server"
    workdir = Path(tempfile.mkdtemp(prefix="inferq-replica-wait-"))
    primary = free_port()
    replica = next(port for port in iter(free_port, None) if port != primary)
    processes = []
    try:
        for port, extra in ((primary, []), (replica, ["--replicaof", "127.0.0.1", str(primary)])):
            (workdir / str(port)).mkdir()
            processes.append(
                subprocess.Popen(
                    [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(workdir / str(port)),
                     "--repl-diskless-sync-delay", "0", *extra],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        client = redis.Redis(port=primary, socket_timeout=2)

        def acknowledges() -> bool:
            try:
                client.set("probe", 1)
                return int(client.wait(1, 100)) == 1
            except redis.RedisError:
                return False

        wait_until(acknowledges, 30, "a replica that acknowledges")
        client.close()
        yield primary
    finally:
        for process in processes:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


async def sequential(store: TaskStore, prefix: str, tasks: int, per_write: int) -> list[float]:
    """Seconds per write, writes one after another."""
    times = []
    for start in range(0, tasks, per_write):
        outcomes = {f"{prefix}-{n}": RESULT for n in range(start, start + per_write)}
        began = time.perf_counter()
        await store.finish(outcomes, "bench")
        times.append(time.perf_counter() - began)
    return times


async def concurrent(store: TaskStore, prefix: str, tasks: int, writers: int) -> float:
    """Tasks per second, ``writers`` writing one task at a time each."""
    per_writer = tasks // writers

    async def writer(w: int) -> None:
        for n in range(per_writer):
            await store.finish({f"{prefix}-{w}-{n}": RESULT}, "bench")

    began = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return per_writer * writers / (time.perf_counter() - began)


def micros(times: list[float], quantile: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1e6


async def measure(port: int, tasks: int) -> None:
    client = connect_redis(f"redis://127.0.0.1:{port}/0")
    names = Names("bench-replica-wait")
    print(f"{'':24}{'no WAIT':>14}{'WAIT 1 replica':>16}")
    try:
        rows: dict[str, list[str]] = {}
        for replicas in (0, 1):
            store = TaskStore(client, names, 600, replicas, 1000)
            await sequential(store, f"warm{replicas}", 200, 1)
            one = await sequential(store, f"one{replicas}", tasks, 1)
            batch = await sequential(store, f"batch{replicas}", tasks, 16)
            rate = await concurrent(store, f"many{replicas}", tasks, 32)
            rows.setdefault("1 task, median us", []).append(f"{statistics.median(one) * 1e6:.0f}")
            rows.setdefault("1 task, p99 us", []).append(f"{micros(one, 0.99):.0f}")
            rows.setdefault("16 tasks, median us", []).append(
                f"{statistics.median(batch) * 1e6:.0f}"
            )
            rows.setdefault("32 writers, tasks/s", []).append(f"{rate:.0f}")
        for name, values in rows.items():
            print(f"{name:24}{values[0]:>14}{values[1]:>16}")
    finally:
        keys = [key async for key in client.scan_iter(match=names.key_pattern, count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=4000, help="tasks written per measure")
    args = parser.parse_args()
    with primary_and_replica() as port:
        asyncio.run(measure(port, args.tasks))


if __name__ == "__main__":
    main()
