"""Failover run: inferq on a 3-node RabbitMQ cluster and a Redis with Sentinel, under load,
while the node leading the model's queue, the Redis primary and a gateway's broker link die;
then every task is accounted for (load_testing/README.md, "Failover run").

    python -m load_testing.failover --runs 3 --tasks 5000

Each run starts its own servers (load_testing/cluster.py), 2 gateways and 3 workers of
model_b (INFERQ_AMQP_URL: the three nodes; INFERQ_QUEUE_TYPE=quorum; INFERQ_REDIS_URL: the
Sentinels) in a fresh namespace, and closed-loop clients sending digits to both gateways, each
answer checked against the digit's label. As the accepted tasks pass 15%, 40% and 60% of
``--tasks``: the node leading the model queue is SIGKILLed, then the Redis primary (the
Sentinels promote the replica), then one gateway's broker connections are closed by the
broker (``rabbitmqctl close_connection``). The killed servers come back a few seconds later,
as a restarted machine does (the old primary as a replica of the new one).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
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
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from inferq.names import Names
from inferq.tasks.store import read_notice
from load_testing.chaos import FINAL, RETRY_STATUSES, Tally
from load_testing.cluster import MASTER_NAME, RabbitNode, Servers, local_ports, missing
from load_testing.processes import Popen, Processes
from load_testing.samples import Digits, Sample, WrongResult

MODEL = "model_b"
#: Access-log statuses of a task the model ran (``skipped (already final)``: it did not).
EXECUTED = frozenset({"succeeded", "failed", "expired", "requeued (not stored)"})
FAULTS = frozenset(
    {"SIGKILL queue leader", "SIGKILL Redis primary", "close gateway 0's broker connections"}
)


@dataclass
class FailoverTally(Tally):
    """`chaos.Tally`, plus what the clients saw and what the faults cost."""

    retried_503: int = 0  # POST or GET answered 503, retried
    retried_429: int = 0
    transport_errors: int = 0  # no answer (connection refused or reset), retried
    client_timeouts: int = 0  # a request that hit the client's timeout: a hang
    max_request_s: float = 0.0  # the longest single HTTP request
    max_task_s: float = 0.0  # the longest from a task's first POST to its checked answer
    redelivered: int = 0  # tasks whose record says attempts > 1
    # The model ran a task whose POST was answered 503: the broker got the message but the
    # gateway lost its confirm (a node or connection gone), marked the task rejected and
    # refused it; the worker ran it anyway (model_b reads no record first) and its result was
    # not stored (finish.lua keeps "rejected"). Wasted work, not a loss: the client retried.
    executed_unaccepted: int = 0
    faults_late: int = 0  # faults made once every task was accepted: not under load
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            super().ok
            and self.rejected == 0
            and self.client_timeouts == 0
            and self.faults_late == 0
        )


class Run:
    def __init__(
        self, args: argparse.Namespace, servers: Servers, processes: Processes,
        gateways: list[tuple[str, Popen]], names: Names, digits: Digits, seed: int,
    ) -> None:  # fmt: skip
        self.args = args
        self.servers = servers
        self.processes = processes
        self.gateways = gateways
        self.names = names
        self.digits = digits
        self.rng = random.Random(seed)
        self.tally = FailoverTally()
        self.checks: dict[str, Sample] = {}  # accepted task id -> its sample
        self.views: dict[str, dict[str, Any]] = {}  # task id -> its last view seen
        self.final_writes: collections.Counter[str] = collections.Counter()
        self.progress = asyncio.Event()  # set at each accepted task
        self.indexes = itertools.count()
        self.connections_at_start: list[dict[str, Any]] = []

    # --- the clients ------------------------------------------------------------------------
    async def request(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        """One request; None when it got no answer (counted)."""
        started = time.monotonic()
        try:
            return await client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            self.tally.client_timeouts += 1
            return None
        except httpx.TransportError:
            self.tally.transport_errors += 1
            return None
        finally:
            elapsed = time.monotonic() - started
            self.tally.max_request_s = max(self.tally.max_request_s, round(elapsed, 3))

    def retry_after(self, response: httpx.Response | None) -> float:
        if response is not None and response.status_code in RETRY_STATUSES:
            if response.status_code == 503:
                self.tally.retried_503 += 1
            else:
                self.tally.retried_429 += 1
            return min(float(response.headers.get("Retry-After", "0.5")), 1.0)
        return 0.25

    async def one_task(self, clients: list[httpx.AsyncClient], which: int) -> None:
        sample = self.digits.sample(self.rng)
        self.tally.submitted += 1
        started = time.monotonic()
        give_up = started + self.args.task_patience_s
        wait = {"wait": self.args.wait}
        task_id = ""
        view: dict[str, Any] = {}
        while not task_id:  # submit, on this client's gateway, then on the other
            client = clients[which % len(clients)]
            response = await self.request(
                client, "POST", f"/predict/{MODEL}", json=sample.body, params=wait
            )
            if response is not None and response.status_code in (200, 202):
                view = response.json()
                task_id = view["task_id"]
                self.checks[task_id] = sample
                self.tally.accepted += 1
                self.tally.answered_final += response.status_code == 200
                self.progress.set()
                break
            if response is not None and response.status_code not in RETRY_STATUSES:
                raise RuntimeError(f"POST answered {response.status_code}: {response.text}")
            if time.monotonic() > give_up:
                self.tally.rejected += 1
                return
            which += response is None  # no answer: try the other gateway
            await asyncio.sleep(self.retry_after(response))
        while view.get("status") not in FINAL and time.monotonic() < give_up:
            client = clients[which % len(clients)]
            response = await self.request(client, "GET", f"/tasks/{task_id}", params=wait)
            if response is not None and response.status_code == 200:
                view = response.json()
                continue
            which += response is None
            await asyncio.sleep(self.retry_after(response))
        self.views[task_id] = view
        if view.get("status") in FINAL:
            self.tally.max_task_s = max(self.tally.max_task_s, round(time.monotonic() - started, 3))

    async def client_loop(self, clients: list[httpx.AsyncClient], which: int) -> None:
        while next(self.indexes) < self.args.tasks:
            await self.one_task(clients, which)

    # --- the faults -------------------------------------------------------------------------
    async def at_progress(self, fraction: float) -> None:
        while self.tally.accepted < fraction * self.args.tasks:
            self.progress.clear()
            await self.progress.wait()

    def event(self, what: str, **details: Any) -> dict[str, Any]:
        entry = {"at_accepted": self.tally.accepted, "what": what, **details}
        self.tally.events.append(entry)
        print(f"  [{self.tally.accepted:>5}] {what} {details}", flush=True)
        return entry

    async def kill_queue_leader(self, leader: RabbitNode) -> None:
        cluster = self.servers.rabbit
        queue = self.names.model_queue(MODEL)
        on_it = sum(row["node"] == leader.name for row in self.connections_at_start)
        started = time.monotonic()
        await asyncio.to_thread(leader.kill)
        entry = self.event("SIGKILL queue leader", node=leader.name, its_connections=on_it)
        new = None
        while new in (None, leader) and time.monotonic() - started < 60:
            await asyncio.sleep(0.2)
            new = await asyncio.to_thread(cluster.leader_of, queue)
        entry["new_leader"] = new.name if new else None
        entry["leader_after_s"] = round(time.monotonic() - started, 1)
        await asyncio.sleep(max(0.0, started + self.args.down_s - time.monotonic()))
        await asyncio.to_thread(leader.start)
        await asyncio.to_thread(leader.await_startup)
        entry["back_after_s"] = round(time.monotonic() - started, 1)

    async def kill_redis_primary(self) -> None:
        sentinels = self.servers.redis
        started = time.monotonic()
        old = await asyncio.to_thread(sentinels.kill_primary)
        entry = self.event("SIGKILL Redis primary", port=old)
        new = await asyncio.to_thread(sentinels.wait_promoted, old, 60)
        entry["promoted"] = new
        entry["promoted_after_s"] = round(time.monotonic() - started, 1)
        await asyncio.sleep(max(0.0, started + self.args.down_s - time.monotonic()))
        await asyncio.to_thread(sentinels.start_server, old, new)
        entry["back_as_replica_after_s"] = round(time.monotonic() - started, 1)

    async def cut_gateway_link(self, fraction: float) -> None:
        """Finds gateway 0's connections first (rabbitmqctl takes a second or two a call),
        then closes them once the load reaches ``fraction``."""
        _, gateway = self.gateways[0]
        cluster = self.servers.rabbit
        ports = {node.port for node in cluster.nodes}
        started = time.monotonic()
        found: list[dict[str, Any]] = []
        while not found:  # it may be reconnecting from an earlier fault: wait for it
            mine = await asyncio.to_thread(local_ports, gateway.pid, ports)
            rows = await asyncio.to_thread(cluster.connections)
            found = [row for row in rows if row["peer_port"] in mine]
            if not found and time.monotonic() - started > 30:
                raise RuntimeError("gateway 0 had no broker connection to close for 30 s")
            await asyncio.sleep(0.2)
        await self.at_progress(fraction)
        via = cluster.live()[0]
        for row in found:
            await asyncio.to_thread(via.ctl, "close_connection", row["pid"], "cut", check=False)
        nodes = [row["node"] for row in found]
        entry = self.event("close gateway 0's broker connections", closed=len(found), nodes=nodes)
        cut = time.monotonic()
        while time.monotonic() - cut < 60:  # it must connect again, to any node
            mine = await asyncio.to_thread(local_ports, gateway.pid, ports)
            rows = await asyncio.to_thread(cluster.connections)
            if again := [row["node"] for row in rows if row["peer_port"] in mine]:
                entry["reconnected_to"] = again
                entry["reconnected_within_s"] = round(time.monotonic() - cut, 1)
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("gateway 0 did not connect to the broker again within 60 s")

    async def faults(self, leader: RabbitNode) -> None:
        """The three faults, each at its point of the load, each in its own task: a server's
        restart does not hold the next fault back."""
        made = []
        for fraction, fault in (
            (0.15, lambda: self.kill_queue_leader(leader)),
            (0.40, self.kill_redis_primary),
            (0.50, lambda: self.cut_gateway_link(0.60)),
        ):
            await self.at_progress(fraction)
            made.append(asyncio.create_task(fault()))
        await asyncio.gather(*made)

    # --- the accounting ---------------------------------------------------------------------
    async def count_final_writes(self, subscribed: asyncio.Event) -> None:
        """Each write of a final state announces the task once on the task-done channel; the
        subscription follows the master through the Sentinels and resubscribes after a
        failover (a notice published while it is away is missed)."""
        sentinel = Sentinel(
            [("127.0.0.1", port) for port in self.servers.redis.sentinel_ports],
            socket_timeout=2,
        )
        while True:
            try:
                async with sentinel.master_for(MASTER_NAME).pubsub() as pubsub:
                    await pubsub.subscribe(self.names.task_done_channel)
                    subscribed.set()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            for state in read_notice(message["data"]):
                                self.final_writes[state.task_id] += 1
            except (RedisError, OSError):
                await asyncio.sleep(0.2)

    async def collect(self, clients: list[httpx.AsyncClient]) -> None:
        """The final view of every accepted task not yet seen final."""
        pending = {t for t in self.checks if self.views.get(t, {}).get("status") not in FINAL}
        deadline = time.monotonic() + self.args.wait_s
        while pending and time.monotonic() < deadline:
            for task_id in list(pending):
                response = await self.request(clients[0], "GET", f"/tasks/{task_id}")
                if response is not None and response.status_code == 200:
                    self.views[task_id] = response.json()
                    if self.views[task_id]["status"] in FINAL:
                        pending.discard(task_id)
                elif response is not None and response.status_code == 404:
                    self.views[task_id] = {"status": "not found"}
                    pending.discard(task_id)
            if pending:
                await asyncio.sleep(0.5)

    def executions(self) -> collections.Counter[str]:
        """How many times the model ran each task, from the workers' access-log lines."""
        runs: collections.Counter[str] = collections.Counter()
        for path in self.processes.log_dir.glob(f"{MODEL}-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if '"task_id"' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("status") in EXECUTED and record.get("task_id"):
                        runs[record["task_id"]] += 1
        return runs

    def account(self) -> None:
        tally = self.tally
        errors: collections.Counter[str] = collections.Counter()
        for task_id, sample in self.checks.items():
            view = self.views.get(task_id, {"status": "never seen"})
            status = view.get("status")
            if status == "succeeded":
                tally.succeeded += 1
                try:
                    sample.check(view.get("result") or {})
                except WrongResult:
                    tally.wrong_result += 1
            elif status == "failed":
                tally.failed += 1
            elif status == "expired":
                tally.expired += 1
            else:
                tally.lost += 1
            if view.get("error"):
                errors[view["error"]["type"]] += 1
            tally.redelivered += int(view.get("attempts") or 0) > 1
        runs = self.executions()
        tally.executed_twice = sum(1 for n in runs.values() if n > 1)
        tally.executed_unaccepted = len(set(runs) - set(self.checks))
        (self.processes.log_dir / "accepted.txt").write_text("".join(f"{t}\n" for t in self.checks))
        tally.stored_twice = sum(1 for n in self.final_writes.values() if n > 1)
        tally.errors = dict(errors)
        tally.faults_late = sum(
            1 for e in tally.events if e["what"] in FAULTS and e["at_accepted"] >= self.args.tasks
        )

    async def main(self) -> FailoverTally:
        subscribed = asyncio.Event()
        listener = asyncio.create_task(self.count_final_writes(subscribed))
        await asyncio.wait_for(subscribed.wait(), 10)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        timeout = httpx.Timeout(self.args.client_timeout_s)
        clients = [
            httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits)
            for url, _ in self.gateways
        ]
        try:
            queue = self.names.model_queue(MODEL)
            leader = await asyncio.to_thread(self.servers.rabbit.leader_of, queue)
            if leader is None:
                raise RuntimeError(f"no leader found for {queue}")
            self.connections_at_start = await asyncio.to_thread(self.servers.rabbit.connections)
            per_node = collections.Counter(row["node"] for row in self.connections_at_start)
            self.event("connections per node at start", **dict(sorted(per_node.items())))
            started = time.monotonic()
            faults = asyncio.create_task(self.faults(leader))
            loops = [
                asyncio.create_task(self.client_loop(clients, i)) for i in range(self.args.clients)
            ]
            done, _ = await asyncio.wait([faults, *loops], return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a fault that could not be made, or a client's bug, fails the run
            await asyncio.gather(*loops)
            try:  # a restart may still be under way
                await asyncio.wait_for(faults, 120)
            except TimeoutError:
                self.event("faults not all made: the load ended first")
                self.tally.lost += 1  # not a run that tested what it says: FAIL
            await self.collect(clients)
            self.tally.seconds = round(time.monotonic() - started, 1)
            await asyncio.sleep(1)  # let the last task-done notices arrive
            self.account()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            for client in clients:
                await client.aclose()
        return self.tally


def one_run(args: argparse.Namespace, number: int, digits: Digits, log_root: Path) -> FailoverTally:
    namespace = f"failover-{os.urandom(4).hex()}"
    log_dir = log_root / f"run-{number}"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with Servers() as servers:
        print(f"run {number}: servers up in {time.monotonic() - started:.0f}s ({servers.dir})")
        env = {
            "INFERQ_AMQP_URL": servers.rabbit.amqp_url,
            "INFERQ_QUEUE_TYPE": "quorum",
            "INFERQ_REDIS_URL": servers.redis.url,
            "INFERQ_REDIS_MIN_REPLICAS_ACK": str(args.min_replicas_ack),
            "INFERQ_HEARTBEAT_INTERVAL_S": "0.5",
            "INFERQ_LOG_FORMAT": "json",
            "INFERQ_LOG_LEVEL": "INFO",
        }
        processes = Processes(namespace, log_dir, env=env)
        try:
            gateways = []
            for _ in range(2):
                url = processes.start_gateway()
                gateways.append((url, processes.processes[-1]))
            workers = [processes.start_worker(MODEL) for _ in range(3)]
            processes.wait_live(MODEL, 3, 90, processes.processes)
            run = Run(args, servers, processes, gateways, Names(namespace), digits,
                      seed=(args.seed or 0) + number)  # fmt: skip
            tally = asyncio.run(run.main())
            gone = [p.pid for p in [*workers, *(g for _, g in gateways)] if p.poll() is not None]
            if gone:
                tally.events.append({"what": "processes exited during the run", "pids": gone})
        finally:
            processes.stop(grace_s=10)
    return tally


def report(tallies: list[FailoverTally], args: argparse.Namespace, log_root: Path) -> str:
    rows = [
        ("accepted", "accepted"), ("succeeded", "succeeded"), ("failed", "failed"),
        ("expired", "expired"), ("rejected", "rejected"), ("lost", "lost"),
        ("wrong result", "wrong_result"), ("executed twice", "executed_twice"),
        ("redelivered", "redelivered"), ("ran, refused", "executed_unaccepted"),
        ("stored twice", "stored_twice"),
        ("503 retried", "retried_503"), ("429 retried", "retried_429"),
        ("no answer", "transport_errors"), ("client timeouts", "client_timeouts"),
        ("faults late", "faults_late"), ("max request s", "max_request_s"),
        ("max task s", "max_task_s"), ("seconds", "seconds"),
    ]  # fmt: skip
    head = "".join(f"{f'run {i + 1}':>10}" for i in range(len(tallies)))
    lines = [
        f"failover: {args.tasks} × {MODEL} per run, {args.clients} closed-loop clients, "
        "2 gateways, 3 workers, 3 RabbitMQ nodes (quorum), Redis + replica + 3 Sentinels",
        f"  {'':<16}{head}",
    ]
    for name, attr in rows:
        lines.append(f"  {name:<16}" + "".join(f"{getattr(t, attr):>10}" for t in tallies))
    lines.append(
        "  lost: accepted, never final; executed twice: >1 access-log line of the workers "
        "(the model ran it); stored twice: >1 task-done notice (final state written twice); "
        "ran, refused: run by a worker though its POST was answered 503"
    )
    for i, tally in enumerate(tallies, 1):
        if tally.errors:
            lines.append(f"  run {i} errors: {tally.errors}")
        for entry in tally.events:
            lines.append(f"  run {i}: {entry}")
    ok = all(t.ok for t in tallies)
    lines.append(f"  {'PASS' if ok else 'FAIL'}   (logs: {log_root})")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m load_testing.failover", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=1, help="runs, each on fresh servers")
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per run")
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients")
    parser.add_argument("--wait", type=float, default=5.0, help="?wait= of POSTs and GETs (s)")
    parser.add_argument("--client-timeout-s", type=float, default=15.0,
                        help="a request without an answer by then counts as a hang")  # fmt: skip
    parser.add_argument("--task-patience-s", type=float, default=60.0,
                        help="how long a client keeps at one task (retrying 503/429)")  # fmt: skip
    parser.add_argument("--wait-s", type=float, default=60.0,
                        help="after the load, longest wait for accepted tasks to end")  # fmt: skip
    parser.add_argument("--down-s", type=float, default=5.0,
                        help="how long a killed server stays down before it restarts")  # fmt: skip
    parser.add_argument("--min-replicas-ack", type=int, default=1,
                        help="INFERQ_REDIS_MIN_REPLICAS_ACK of the workers")  # fmt: skip
    parser.add_argument("--seed", type=int, help="seed of the digits chosen")
    parser.add_argument("--log-dir", type=Path, help="process logs (default: a temporary dir)")
    parser.add_argument("--json", action="store_true", help="also print the tallies as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.tasks < 10 or args.clients < 1:
        parser.error("--runs and --clients must be positive, --tasks at least 10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if lacking := missing():
        print(f"failover: cannot run, not installed: {lacking}", file=sys.stderr)
        return 2
    log_root = args.log_dir or Path(tempfile.mkdtemp(prefix="inferq-failover-logs-"))
    digits = Digits()
    tallies = [one_run(args, number, digits, log_root) for number in range(1, args.runs + 1)]
    print(report(tallies, args, log_root), flush=True)
    if args.json:
        print(json.dumps([asdict(t) for t in tallies]), flush=True)
    return 0 if all(t.ok for t in tallies) else 1


if __name__ == "__main__":
    sys.exit(main())
