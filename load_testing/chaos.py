"""Chaos run: submit tasks at a steady rate while killing workers at random, then account for
every task (load_testing/CHAOS.md).

    python -m load_testing.chaos --tasks 1000 --workers 3 --kill-every 1 --model sleep --ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from inferq.names import Names
from inferq.settings import CommonSettings
from inferq.tasks.store import read_notice
from load_testing.processes import Popen, Processes

FINAL = frozenset({"succeeded", "failed", "expired"})
RETRY_STATUSES = frozenset({429, 503})


@dataclass
class Tally:
    """What happened to the tasks of one run."""

    submitted: int = 0
    accepted: int = 0  # answered 202 (or, with --post-wait, 200 with the final state)
    answered_final: int = 0  # of those, answered 200 by a POST ?wait= (--post-wait)
    rejected: int = 0  # never accepted, after retrying 429/503 for --submit-patience-s
    succeeded: int = 0
    failed: int = 0
    expired: int = 0
    lost: int = 0  # accepted but not final by the end of the wait, or 404
    wrong_result: int = 0  # succeeded with a result that is not the answer to its request
    executed_twice: int = 0  # started by more than one worker (attempts > 1): redeliveries
    stored_twice: int = 0  # a final state written more than once: must never happen
    kills: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)  # failed/expired tasks, by error type

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.stored_twice == 0 and self.wrong_result == 0


class Run:
    def __init__(
        self, args: argparse.Namespace, processes: Processes, workers: list[Popen], names: Names
    ) -> None:
        self.args = args
        self.processes = processes
        self.workers = workers
        self.names = names
        self.tally = Tally()
        self.expected: dict[str, dict[str, Any]] = {}  # task id -> expected result
        self.final_writes: collections.Counter[str] = collections.Counter()
        self.rng = random.Random(args.seed)
        # With ?wait=, a task that outlasts the wait is answered 202 and must be pollable.
        self.post_params = {"wait": args.post_wait} if args.post_wait else {}

    def body(self, index: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The request of task ``index`` and the result it must get (None: not checked)."""
        if self.args.body:
            return json.loads(self.args.body), None
        ms = self.args.ms + index % 7  # varied, so a result mixed up between tasks shows
        return {"ms": ms}, {"slept_ms": ms}

    async def submit(self, client: httpx.AsyncClient, index: int) -> None:
        body, expected = self.body(index)
        self.tally.submitted += 1
        give_up = time.monotonic() + self.args.submit_patience_s
        while True:
            try:
                response = await client.post(
                    f"/predict/{self.args.model}", json=body, params=self.post_params
                )
            except httpx.TransportError:
                status, retry_after = 0, 0.5
            else:
                status = response.status_code
                retry_after = float(response.headers.get("Retry-After", "1"))
            if status in (200, 202):
                self.tally.accepted += 1
                self.tally.answered_final += status == 200
                self.expected[response.json()["task_id"]] = expected or {}
                return
            if status not in RETRY_STATUSES and status != 0:
                raise RuntimeError(f"POST answered {status}: {response.text}")
            if time.monotonic() + retry_after > give_up:
                self.tally.rejected += 1
                return
            await asyncio.sleep(min(retry_after, 1.0))

    async def submit_all(self, client: httpx.AsyncClient) -> None:
        interval = 1 / self.args.rate
        started = time.monotonic()
        pending = set()
        for index in range(self.args.tasks):
            await asyncio.sleep(max(0.0, started + index * interval - time.monotonic()))
            pending.add(asyncio.create_task(self.submit(client, index)))
            pending = {task for task in pending if not task.done()}
        await asyncio.gather(*pending)

    async def kill_until(self, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.args.kill_every)
                return
            victim = self.rng.choice(self.workers)
            victim.kill()
            await asyncio.to_thread(victim.wait)
            self.workers.remove(victim)
            self.workers.append(self.processes.start_worker(self.args.model))
            self.tally.kills += 1

    async def count_final_writes(self, redis: Redis, subscribed: asyncio.Event) -> None:
        """Each write of a final state announces the task once on the task-done channel."""
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(self.names.task_done_channel)
            subscribed.set()
            async for message in pubsub.listen():
                if message["type"] == "message":
                    for state in read_notice(message["data"]):
                        self.final_writes[state.task_id] += 1

    async def collect(self, client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
        """Every accepted task's view, once all are final or the wait is over."""
        views: dict[str, dict[str, Any]] = {}
        pending = set(self.expected)
        limit = asyncio.Semaphore(32)
        deadline = time.monotonic() + self.args.wait_s

        async def fetch(task_id: str) -> None:
            async with limit:
                response = await client.get(f"/tasks/{task_id}")
            if response.status_code == 404:
                views[task_id] = {"status": "not found"}
                pending.discard(task_id)
            elif response.status_code == 200:
                views[task_id] = response.json()
                if views[task_id]["status"] in FINAL:
                    pending.discard(task_id)

        while pending and time.monotonic() < deadline:
            await asyncio.gather(*(fetch(task_id) for task_id in list(pending)))
            if pending:
                await asyncio.sleep(0.5)
        return views

    def account(self, views: dict[str, dict[str, Any]]) -> None:
        tally = self.tally
        errors: collections.Counter[str] = collections.Counter()
        for task_id, expected in self.expected.items():
            view = views.get(task_id, {"status": "never seen"})
            status = view["status"]
            if status == "succeeded":
                tally.succeeded += 1
                if expected and view.get("result") != expected:
                    tally.wrong_result += 1
            elif status == "failed":
                tally.failed += 1
            elif status == "expired":
                tally.expired += 1
            else:
                tally.lost += 1
            if view.get("error"):
                errors[view["error"]["type"]] += 1
            if int(view.get("attempts") or 0) > 1:
                tally.executed_twice += 1
        tally.stored_twice = sum(1 for n in self.final_writes.values() if n > 1)
        tally.errors = dict(errors)

    async def main(self) -> Tally:
        settings = CommonSettings(namespace=self.names.namespace)
        redis = Redis.from_url(settings.redis_url)
        subscribed = asyncio.Event()
        listener = asyncio.create_task(self.count_final_writes(redis, subscribed))
        await asyncio.wait_for(subscribed.wait(), 10)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        try:
            async with httpx.AsyncClient(
                base_url=self.processes.url, timeout=30, limits=limits
            ) as client:
                started = time.monotonic()
                submitted = asyncio.Event()
                killer = asyncio.create_task(self.kill_until(submitted))
                try:
                    await self.submit_all(client)
                finally:
                    submitted.set()
                    await killer
                views = await self.collect(client)
                self.tally.seconds = round(time.monotonic() - started, 1)
            await asyncio.sleep(1)  # let the last task-done announcements arrive
            self.account(views)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await redis.aclose()
        return self.tally


def report(tally: Tally, args: argparse.Namespace, log_dir: Path) -> str:
    rows = [
        ("accepted", tally.accepted, f"of {tally.submitted} submitted; {tally.rejected} rejected"),
        *(
            [("answered 200", tally.answered_final, f"POST ?wait={args.post_wait}: final at once")]
            if args.post_wait
            else []
        ),
        ("succeeded", tally.succeeded, ""),
        ("failed", tally.failed, ""),
        ("expired", tally.expired, ""),
        ("lost", tally.lost, "accepted, never final or 404 — must be 0"),
        ("wrong result", tally.wrong_result, "must be 0"),
        ("executed twice", tally.executed_twice, "attempts > 1: redelivered after a kill"),
        ("stored twice", tally.stored_twice, "final state written twice — must be 0"),
        ("workers killed", tally.kills, f"one every {args.kill_every or '∞'}s"),
    ]
    lines = [
        f"chaos: {args.tasks} × {args.model} at {args.rate}/s, {args.workers} workers, "
        f"{tally.seconds}s",
        *(f"  {name:<15}{value:>7}  {note}" for name, value, note in rows),
    ]
    if tally.errors:
        lines.append(f"  errors: {tally.errors}")
    lines.append(f"  {'PASS' if tally.ok else 'FAIL'}   (logs: {log_dir})")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m load_testing.chaos", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--tasks", type=int, default=1000, help="tasks to submit (N)")
    parser.add_argument("--workers", type=int, default=3, help="workers kept running (K)")
    parser.add_argument(
        "--kill-every", type=float, default=1.0, help="seconds between kills (S); 0: none"
    )
    parser.add_argument("--model", default="sleep", help="model to serve and load")
    parser.add_argument("--ms", type=int, default=50, help="sleep model: ms per task (+0..6)")
    parser.add_argument("--body", help="request JSON for a model other than sleep")
    parser.add_argument("--rate", type=float, default=50.0, help="tasks submitted per second")
    parser.add_argument(
        "--post-wait",
        type=float,
        default=0.0,
        help="POST with ?wait=S: 200 if the task ends within S s, else 202 (0: plain POST)",
    )
    parser.add_argument(
        "--wait-s", type=float, default=120.0, help="longest wait for tasks to end, after the last"
    )
    parser.add_argument(
        "--submit-patience-s", type=float, default=30.0, help="how long a POST retries 429/503"
    )
    parser.add_argument("--seed", type=int, help="seed of the random kills")
    parser.add_argument("--log-dir", type=Path, help="process logs (default: a temporary dir)")
    parser.add_argument("--json", action="store_true", help="also print the tally as JSON")
    args = parser.parse_args(argv)
    if args.model != "sleep" and not args.body:
        parser.error("--body is required for a model other than sleep")
    if args.workers < 1 or args.tasks < 1 or args.rate <= 0:
        parser.error("--workers, --tasks and --rate must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.kill_every:
        args.kill_every = None  # never
    namespace = f"chaos-{os.urandom(4).hex()}"
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix=f"{namespace}-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    heartbeat = os.environ.get("INFERQ_HEARTBEAT_INTERVAL_S", "0.5")
    processes = Processes(namespace, log_dir, env={"INFERQ_HEARTBEAT_INTERVAL_S": heartbeat})
    try:
        processes.start_gateway()
        workers = [processes.start_worker(args.model) for _ in range(args.workers)]
        processes.wait_live(args.model, args.workers, 60, processes.processes)
        tally = asyncio.run(Run(args, processes, workers, Names(namespace)).main())
    finally:
        processes.close([args.model])
    print(report(tally, args, log_dir), flush=True)
    if args.json:
        print(json.dumps(asdict(tally)), flush=True)
    return 0 if tally.ok else 1


if __name__ == "__main__":
    sys.exit(main())
