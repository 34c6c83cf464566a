"""Batching (issue 4): "At 64 clients, batching must give >= 3x the throughput of batch size 1
with p99 no worse." One gateway and one big_mlp worker, a fresh stack per variant: batch size
1, then the model's at each batch delay; the worker's Prometheus counters give the mean batch
and the inference time per batch. Writes batching.json and batching.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from load_testing.bench import report, workloads
from load_testing.bench.measure import Context, Say, Timing, measure
from load_testing.bench.stack import InferqStack

MODEL = "big_mlp"
MIN_THROUGHPUT_RATIO = 3.0
COUNTERS = (
    "inferq_worker_batch_size_sum",
    "inferq_worker_batch_size_count",
    "inferq_worker_inference_seconds_sum",
    "inferq_worker_queue_wait_seconds_sum",
    "inferq_worker_queue_wait_seconds_count",
)
STARTED = re.compile(r"\(prefetch (\d+), batch (\d+)\)")


@dataclass
class BatchingConfig:
    clients: int = 64
    delays_ms: list[float] = field(default_factory=lambda: [0.0, 2.0])
    batch_size: int | None = None  # of the batched runs; None: the model's own (64)
    prefetch: int = 0  # of the batched runs; 0: the runtime's default, 2 x batch size
    duration_s: float = 10.0
    warmup_s: float = 3.0
    out: Path = Path("load_testing/results/bench")


def variants(config: BatchingConfig) -> list[tuple[str, dict[str, str]]]:
    """(name, worker environment) of each run, the unbatched one first."""
    batched = {}
    if config.batch_size:
        batched["INFERQ_MAX_BATCH_SIZE"] = str(config.batch_size)
    if config.prefetch:
        batched["INFERQ_PREFETCH"] = str(config.prefetch)
    runs = [("unbatched", {"INFERQ_MAX_BATCH_SIZE": "1"})]
    for delay in config.delays_ms:
        runs.append((f"delay {delay:g} ms", {**batched, "INFERQ_MAX_BATCH_DELAY_MS": f"{delay:g}"}))
    return runs


def run_batching(config: BatchingConfig, say: Say = print) -> dict[str, Any]:
    config.out.mkdir(parents=True, exist_ok=True)
    context = Context.probe(say)
    workload = workloads.big_mlp()
    timing = Timing(config.duration_s, config.warmup_s)
    rows = []
    for name, env in variants(config):
        log_dir = config.out / "logs" / f"batching-{name.replace(' ', '')}"
        with InferqStack(log_dir, 1, MODEL, metrics=True, env=env) as stack:
            row = measure(
                stack,
                workload,
                "wait",
                config.clients,
                timing,
                context.services,
                say,
                counters=partial(scrape, stack.metrics_ports.values()),
            )
            row.update(_worker_setup(stack, env))
        row["variant"] = name
        row.update(_batches(row.get("counters", {})))
        say(f"  mean batch {report.fixed(row['mean_batch_size'])}, prefetch {row['prefetch']}")
        rows.append(row)
    checks = targets(rows)
    result = {
        **context.as_json(),
        "config": {**asdict(config), "out": str(config.out)},
        "rows": rows,
        "targets": checks,
    }
    report.write_json(result, config.out / "batching.json")
    plot(rows, config.out / "batching.png")
    return result


def scrape(ports: Iterable[int]) -> dict[str, float]:
    """`COUNTERS` from the workers' Prometheus endpoints, each summed over labels and workers."""
    total = dict.fromkeys(COUNTERS, 0.0)
    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in total:
                    total[sample.name] += sample.value
    return total


def _worker_setup(stack: InferqStack, env: dict[str, str]) -> dict[str, Any]:
    """The batch size and prefetch the worker says it runs with (its start-up log line)."""
    found = STARTED.search(stack.log_of(stack.workers[0]))
    return {
        "prefetch": int(found.group(1)) if found else None,
        "max_batch_size": int(found.group(2)) if found else None,
        "max_batch_delay_ms": float(env["INFERQ_MAX_BATCH_DELAY_MS"])
        if "INFERQ_MAX_BATCH_DELAY_MS" in env
        else None,
        "worker_env": env,
    }


def _batches(counters: dict[str, float]) -> dict[str, Any]:
    count = counters.get("inferq_worker_batch_size_count") or 0
    picked_up = counters.get("inferq_worker_queue_wait_seconds_count") or 0
    return {
        "batches": int(count),
        "mean_batch_size": counters["inferq_worker_batch_size_sum"] / count if count else None,
        "inference_ms_per_batch": 1000 * counters["inferq_worker_inference_seconds_sum"] / count
        if count
        else None,
        # From the task's creation at the gateway to its pickup by the worker.
        "queue_wait_ms": 1000 * counters["inferq_worker_queue_wait_seconds_sum"] / picked_up
        if picked_up
        else None,
    }


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each batched run against the unbatched one: throughput >= 3x, p99 no worse."""
    unbatched = rows[0]
    checks = []
    for row in rows[1:]:
        ratio = row["throughput_rps"] / unbatched["throughput_rps"]
        row["throughput_ratio"] = ratio
        row["p99_ratio"] = row["p99_ms"] / unbatched["p99_ms"]
        errors = row["errors"] + unbatched["errors"]
        checks.append(
            {
                "variant": row["variant"],
                "throughput_ratio": round(ratio, 3),
                "p99_ms": round(row["p99_ms"], 2),
                "unbatched_p99_ms": round(unbatched["p99_ms"], 2),
                "target": f"throughput >= {MIN_THROUGHPUT_RATIO:g}x, p99 <= unbatched p99",
                "errors": errors,
                "passed": ratio >= MIN_THROUGHPUT_RATIO
                and row["p99_ms"] <= unbatched["p99_ms"]
                and errors == 0,
            }
        )
    return checks


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'run':<14}{'batch':>6}{'prefetch':>9}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}"
        f"{'p99 ms':>9}{'errors':>7}{'mean batch':>11}{'ms/batch':>9}{'wait ms':>8}{'thr x':>7}"
        f"{'busy':>6}{'other':>6}  CPU ms/request"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['variant']:<14}{r['max_batch_size'] or '?':>6}{r['prefetch'] or '?':>9}"
            f"{r['throughput_rps']:>9.1f}{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['errors']:>7}{report.fixed(r['mean_batch_size']):>11}"
            f"{report.fixed(r['inference_ms_per_batch']):>9}{report.fixed(r['queue_wait_ms']):>8}"
            f"{report.fixed(r.get('throughput_ratio', 1.0)):>7}"
            f"{report.fixed(r.get('machine_busy_cores')):>6}"
            f"{report.fixed(r.get('other_busy_cores')):>6}  "
            f"{report.per_process(r.get('cpu_ms_per_request', {}), 2)}"
        )
    return "\n".join(lines)


LEGEND = (
    "big_mlp, 1 gateway + 1 worker, closed-loop clients in wait mode. From the worker's "
    "Prometheus counters\nover the measured window: mean batch size, ms/batch (inference time "
    "per batch), wait ms (mean time\nfrom a task's creation at the gateway to its pickup by "
    "the worker). thr x: over the unbatched run."
)


def format_targets(checks: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{'PASS' if c['passed'] else 'FAIL'}  batching, {c['variant']}: throughput "
        f"{c['throughput_ratio']:.2f}x unbatched (target >= {MIN_THROUGHPUT_RATIO:g}x), p99 "
        f"{c['p99_ms']:.1f} ms vs unbatched {c['unbatched_p99_ms']:.1f} ms (target: no worse)"
        f"{', errors!' if c['errors'] else ''}"
        for c in checks
    )


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Throughput per run; p50, p90, p99 per run."""
    names = [f"{r['variant']}\n(batch {r['max_batch_size']})" for r in rows]
    x = list(range(len(rows)))
    clients = rows[0]["clients"] if rows else 0
    heading = f"big_mlp, 1 worker, {clients} clients (wait): unbatched vs batched"
    with report.figure(path, heading) as (throughput, latency):
        throughput.bar(x, [r["throughput_rps"] for r in rows], color="C0")
        for i, r in enumerate(rows):
            throughput.annotate(f"{r['throughput_rps']:.0f}", (i, r["throughput_rps"]), ha="center",
                                va="bottom", fontsize=8)  # fmt: skip
        if rows:
            goal = MIN_THROUGHPUT_RATIO * rows[0]["throughput_rps"]
            throughput.axhline(
                goal, ls="--", color="gray", label=f"{MIN_THROUGHPUT_RATIO:g}x unbatched"
            )
            throughput.legend(fontsize=8)
        width = 0.27
        for k, (key, label) in enumerate((("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"))):
            latency.bar(
                [i + (k - 1) * width for i in x], [r[key] for r in rows], width, label=label
            )
        for axis, title, unit in (
            (throughput, "Throughput", "completed requests/s"),
            (latency, "Latency", "ms"),
        ):
            axis.set_xticks(x, names, fontsize=8)
            axis.set_ylabel(unit)
            axis.set_title(title)
            axis.grid(True, axis="y", alpha=0.3)
        latency.legend(fontsize=8)
