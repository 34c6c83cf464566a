"""Memory with a backlog (issue 4): "a backlog of 100,000 queued tasks does not grow gateway or
worker memory." One gateway and one sleep worker; after a warm-up, the RSS is sampled while
``senders`` clients queue ``backlog`` tasks and for ``settle_s`` after; a sample of the tasks
is read back. The method is in load_testing/README.md. Writes backlog.json and backlog.png.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from load_testing.bench import procstat, report
from load_testing.bench.loadgen import JSON_HEADERS
from load_testing.bench.measure import Context, Say, cpu_probe, cpu_usage
from load_testing.bench.stack import InferqStack

MODEL = "sleep"
MAX_RSS_GROWTH_MIB = 50.0
JUDGED = ("gateway", "worker-0")  # the processes the target is about
ALIVE = frozenset({"queued", "running", "succeeded"})
CHECKED_TASKS = 200
ERROR_PAUSE_S = 0.05
HTTP_TIMEOUT_S = 30.0


@dataclass
class BacklogConfig:
    backlog: int = 100_000
    sleep_ms: int = 50  # each task keeps the worker busy this long, so the backlog stays
    senders: int = 64  # concurrent POSTs
    warmup: int = 200  # tasks sent and finished before the "before" RSS
    sample_s: float = 1.0
    settle_s: float = 10.0  # sampling goes on this long after the last POST
    time_limit_s: float = 600.0  # the submission stops here, backlog reached or not
    out: Path = Path("load_testing/results/bench")

    @property
    def queue_max_length(self) -> int:
        return max(10_000, 2 * self.backlog)


@dataclass
class Submission:
    accepted: int = 0
    rejected_429: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    kept_ids: list[str] = field(default_factory=list)  # a sample, read back at the end
    seconds: float = 0.0
    timed_out: bool = False


class Sampler(threading.Thread):
    """Every ``period`` s: RSS of each process and the model's queue depth."""

    def __init__(self, stack: InferqStack, pids: dict[str, int], period: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.stack, self.pids, self.period = stack, pids, period
        self.samples: list[dict[str, Any]] = []
        self.submission: Submission | None = None
        self._stop_event = threading.Event()
        self._t0 = time.monotonic()

    def sample(self) -> dict[str, Any]:
        model = self.stack.describe()
        accepted = self.submission.accepted if self.submission else 0
        # As of the workers' last heartbeats (every 2 s): the figure is a few tasks high.
        finished = sum(w["tasks_done"] + w["tasks_failed"] for w in model.get("workers", []))
        row = {
            "t_s": round(time.monotonic() - self._t0, 2),
            "accepted": accepted,
            # Messages in the queue; each holds one task or more (packed by the gateway).
            "queue_depth": model.get("queue_depth"),
            "tasks_waiting": max(0, accepted - finished),
            "rss_mib": {name: procstat.rss_mib(pid) for name, pid in self.pids.items()},
        }
        self.samples.append(row)
        return row

    def run(self) -> None:
        while not self._stop_event.wait(self.period):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def run_backlog(config: BacklogConfig, say: Say = print) -> dict[str, Any]:
    config.out.mkdir(parents=True, exist_ok=True)
    context = Context.probe(say)
    body = orjson.dumps({"ms": config.sleep_ms})
    max_length = str(config.queue_max_length)
    log_dir = config.out / "logs" / "backlog"
    with InferqStack(log_dir, 1, MODEL, env={"INFERQ_QUEUE_MAX_LENGTH": max_length}) as stack:
        pids = {**stack.pids(), **context.services}
        sampler = Sampler(stack, pids, config.sample_s)
        started = sampler.sample()
        say(f"warm-up: {config.warmup} tasks of 0 ms, each waited for")
        warmup_errors = uvloop.run(_warm_up(stack.url, config.warmup))
        time.sleep(config.sample_s)
        before = sampler.sample()
        first = len(sampler.samples) - 1  # the samples from "before" on give the peak
        say(f"submitting {config.backlog} tasks of {config.sleep_ms} ms, {config.senders} senders")
        sampler.submission = submission = Submission()
        sampler.start()
        cpu_pids = {**pids, "loadgen": os.getpid()}
        cpu_start = cpu_probe(cpu_pids)
        try:
            uvloop.run(_submit(stack.url, body, config, submission, say))
            cpu = cpu_usage(cpu_start, cpu_probe(cpu_pids), submission.seconds, submission.accepted)
            say(f"  {submission.accepted} accepted in {submission.seconds:.1f} s; settling")
            time.sleep(config.settle_s)
        finally:
            sampler.stop()
        after = sampler.sample()
        checked = uvloop.run(_read_back(stack.url, submission.kept_ids, config.sleep_ms))
        namespace = stack.namespace
        say(f"  read back {sum(checked.values())} tasks: {dict(checked)}; tearing down")
    samples = sampler.samples[first:]
    result = {
        **context.as_json(),
        "config": {
            **asdict(config),
            "out": str(config.out),
            "queue_max_length": config.queue_max_length,
        },
        "namespace": namespace,  # dropped at the end, backlog included
        "warmup_errors": warmup_errors,
        "submission": {
            "accepted": submission.accepted,
            "rejected_429": submission.rejected_429,
            "errors": dict(submission.errors),
            "seconds": round(submission.seconds, 2),
            "accepted_per_s": round(submission.accepted / submission.seconds, 1)
            if submission.seconds
            else None,
            "timed_out": submission.timed_out,
        },
        "read_back": dict(checked),
        # CPU during the submission; other_busy_cores: what else ran on the machine meanwhile.
        "submission_cpu": cpu,
        "queue_depth_peak": max((s["queue_depth"] or 0 for s in samples), default=None),
        "queue_depth_after": after["queue_depth"],
        "tasks_waiting_peak": max((s["tasks_waiting"] for s in samples), default=None),
        "rss_mib": _rss_summary(started, before, samples, after),
        "samples": sampler.samples,
    }
    result["targets"] = targets(result)
    report.write_json(result, config.out / "backlog.json")
    plot(result, config.out / "backlog.png")
    return result


def _rss_summary(
    started: dict[str, Any],
    before: dict[str, Any],
    samples: list[dict[str, Any]],
    after: dict[str, Any],
) -> dict[str, dict[str, float | None]]:
    summary = {}
    for name, at_before in before["rss_mib"].items():
        seen = [s["rss_mib"].get(name) for s in samples]
        peak = max((v for v in seen if v is not None), default=None)
        summary[name] = {
            "started": started["rss_mib"].get(name),
            "before": at_before,
            "peak": peak,
            "after": after["rss_mib"].get(name),
            "growth": peak - at_before if peak is not None and at_before is not None else None,
        }
    return summary


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    submission = result["submission"]
    lost = sum(n for status, n in result["read_back"].items() if status not in ALIVE)
    errors = sum(submission["errors"].values()) + result["warmup_errors"] + lost
    checks = []
    for name in JUDGED:
        rss = result["rss_mib"].get(name) or {}
        growth = rss.get("growth")
        checks.append(
            {
                "process": name,
                "growth_mib": None if growth is None else round(growth, 2),
                "target": f"< {MAX_RSS_GROWTH_MIB:g} MiB over before",
                "backlog_reached": submission["accepted"] >= result["config"]["backlog"],
                "errors": errors,
                "passed": growth is not None
                and growth < MAX_RSS_GROWTH_MIB
                and submission["accepted"] >= result["config"]["backlog"]
                and errors == 0,
            }
        )
    return checks


async def _warm_up(url: str, count: int, concurrency: int = 8) -> int:
    """``count`` tasks of 0 ms, each waited for; the number that did not succeed."""
    body = orjson.dumps({"ms": 0})
    failed = 0
    remaining = iter(range(count))
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one_client() -> None:
            nonlocal failed
            for _ in remaining:
                try:
                    async with session.post(
                        f"{url}/predict/{MODEL}?wait=10", data=body, headers=JSON_HEADERS
                    ) as answer:
                        view = orjson.loads(await answer.read())
                    ok = answer.status == 200 and view.get("status") == "succeeded"
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    ok = False
                failed += not ok

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return failed


async def _submit(
    url: str, body: bytes, config: BacklogConfig, submission: Submission, say: Say
) -> None:
    """POSTs without waiting until ``backlog`` tasks are accepted or the time is up."""
    # Deadline well past the run, so no task expires (and is dead-lettered) meanwhile.
    deadline_s = int(config.time_limit_s + config.settle_s + 600)
    predict = f"{url}/predict/{MODEL}?timeout={deadline_s}"
    keep_every = max(1, config.backlog // CHECKED_TASKS)
    started = time.monotonic()
    stop_at = started + config.time_limit_s
    next_report = started + 10
    claimed = 0
    connector = aiohttp.TCPConnector(limit=config.senders)
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def sender() -> None:
            nonlocal claimed, next_report
            while claimed < config.backlog:
                if time.monotonic() >= stop_at:
                    submission.timed_out = True
                    return
                claimed += 1
                try:
                    async with session.post(predict, data=body, headers=JSON_HEADERS) as answer:
                        reply = orjson.loads(await answer.read())
                        status = answer.status
                        retry_after = float(answer.headers.get("Retry-After", 1))
                except (aiohttp.ClientError, TimeoutError, ValueError) as failure:
                    status, reply, retry_after = 0, {}, ERROR_PAUSE_S
                    submission.errors[type(failure).__name__] += 1
                if status == 202:
                    submission.accepted += 1
                    if (submission.accepted - 1) % keep_every == 0:
                        submission.kept_ids.append(reply["task_id"])
                else:
                    claimed -= 1  # not in: someone sends it again
                    if status == 429:
                        submission.rejected_429 += 1
                    elif status:
                        submission.errors[f"HTTP {status}"] += 1
                    await asyncio.sleep(min(retry_after, 1.0) if status == 429 else ERROR_PAUSE_S)
                if time.monotonic() >= next_report:
                    next_report += 10
                    say(f"  {submission.accepted} accepted")

        await asyncio.gather(*(sender() for _ in range(config.senders)))
    submission.seconds = time.monotonic() - started


async def _read_back(url: str, task_ids: list[str], sleep_ms: int) -> collections.Counter[str]:
    """Each task's status ("wrong result" for a success with another answer)."""
    statuses: collections.Counter[str] = collections.Counter()
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for task_id in task_ids:
            view: dict[str, Any] = {}
            try:
                async with session.get(f"{url}/tasks/{task_id}") as answer:
                    view = orjson.loads(await answer.read())
                    status = view.get("status") if answer.status == 200 else f"HTTP {answer.status}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as failure:
                status = type(failure).__name__
            if status == "succeeded" and (view.get("result") or {}).get("slept_ms") != sleep_ms:
                status = "wrong result"
            statuses[str(status)] += 1
    return statuses


def format_report(result: dict[str, Any]) -> str:
    s, cpu = result["submission"], result["submission_cpu"]
    lines = [
        f"accepted {s['accepted']} of {result['config']['backlog']} in {s['seconds']:.1f} s "
        f"({s['accepted_per_s'] or 0:.0f}/s); 429: {s['rejected_429']}; errors: "
        f"{s['errors'] or 0}{'; TIME LIMIT reached' if s['timed_out'] else ''}",
        f"tasks waiting: peak {result['tasks_waiting_peak']}; queue depth (messages, each "
        f"holding one task or more): peak {result['queue_depth_peak']}, at the end "
        f"{result['queue_depth_after']}; read back {sum(result['read_back'].values())} "
        f"accepted tasks: {result['read_back']}",
        f"during the submission: {report.fixed(cpu.get('machine_busy_cores'))} cores busy, "
        f"other {report.fixed(cpu.get('other_busy_cores'))}; CPU ms per accepted task: "
        f"{report.per_process(cpu.get('cpu_ms_per_request', {}), 2)}",
        "",
        f"{'RSS MiB':<10}{'started':>9}{'before':>9}{'peak':>9}{'after':>9}{'growth':>9}",
        "-" * 55,
    ]
    for name, rss in result["rss_mib"].items():
        lines.append(
            f"{name:<10}"
            + "".join(f"{report.fixed(rss[k]):>9}" for k in ("started", "before", "peak", "after"))
            + f"{report.fixed(rss['growth']):>9}"
        )
    if (cpu.get("other_busy_cores") or 0) >= report.DISTURBED_CORES:
        lines.append(f"warning: other processes kept {cpu['other_busy_cores']:.2f} cores busy")
    return "\n".join(lines)


LEGEND = (
    "started: right after start; before: after the warm-up (the reference); peak: the largest "
    "sample during\nthe submission and the settle time; after: at the end of the settle time, "
    "backlog still queued.\nrabbitmq and redis are the shared servers, for the record: the "
    "backlog lives in RabbitMQ (and its task\nrecords in Redis), so they are expected to grow."
)


def format_targets(checks: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{'PASS' if c['passed'] else 'FAIL'}  backlog, {c['process']}: RSS growth "
        f"{report.fixed(c['growth_mib'])} MiB (target {c['target']})"
        f"{'' if c['backlog_reached'] else ', backlog not reached!'}"
        f"{', errors!' if c['errors'] else ''}"
        for c in checks
    )


def plot(result: dict[str, Any], path: Path) -> None:
    """Queue depth and the RSS of each process against time."""
    samples = result["samples"]
    t = [s["t_s"] for s in samples]
    backlog = result["config"]["backlog"]
    heading = f"{backlog} tasks queued for one sleep worker: gateway and worker memory"
    with report.figure(path, heading) as (depth, rss):
        depth.plot(t, [s["tasks_waiting"] for s in samples], "-", label="tasks waiting")
        depth.plot(t, [s["queue_depth"] or 0 for s in samples], ":", label="queue depth (messages)")
        depth.plot(t, [s["accepted"] for s in samples], "--", label="accepted")
        for name in result["rss_mib"]:
            rss.plot(t, [s["rss_mib"].get(name) for s in samples], "-", label=name)
        for axis, title, unit in ((depth, "Backlog", "tasks"), (rss, "Resident memory", "MiB")):
            axis.set_xlabel("seconds since start")
            axis.set_ylabel(unit)
            axis.set_title(title)
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=8)
            axis.set_ylim(bottom=0)
