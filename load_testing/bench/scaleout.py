"""Scale-out (issue 4): "with the `sleep` model at 20 ms, throughput with 1, 2, 4, 8 worker
processes >= 0.9x linear." A fresh stack per N, ``clients_per_worker`` x N clients in ``wait``
mode; efficiency = throughput(N) / (N x throughput(1)). Writes scaleout.json and scaleout.png.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from load_testing.bench import report, workloads
from load_testing.bench.measure import Context, Say, Timing, measure
from load_testing.bench.stack import InferqStack

MODEL = "sleep"
MIN_EFFICIENCY = 0.9


@dataclass
class ScaleoutConfig:
    workers: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    clients_per_worker: int = 4
    sleep_ms: int = 20
    duration_s: float = 10.0
    warmup_s: float = 2.0
    out: Path = Path("load_testing/results/bench")


def run_scaleout(config: ScaleoutConfig, say: Say = print) -> dict[str, Any]:
    config.out.mkdir(parents=True, exist_ok=True)
    context = Context.probe(say)
    workload = workloads.sleep(config.sleep_ms)
    timing = Timing(config.duration_s, config.warmup_s)
    rows = []
    for n in config.workers:
        log_dir = config.out / "logs" / f"scaleout-{n}"
        with InferqStack(log_dir, n, MODEL) as stack:
            clients = config.clients_per_worker * n
            row = measure(stack, workload, "wait", clients, timing, context.services, say)
        row["workers"] = n
        rows.append(row)
    add_efficiency(rows)
    checks = targets(rows)
    result = {
        **context.as_json(),
        "config": {**asdict(config), "out": str(config.out)},
        "rows": rows,
        "targets": checks,
    }
    report.write_json(result, config.out / "scaleout.json")
    plot(rows, config.out / "scaleout.png", config)
    return result


def add_efficiency(rows: list[dict[str, Any]]) -> None:
    """Each row's throughput over N x the one-worker throughput (None without an N=1 row)."""
    one = next((r["throughput_rps"] for r in rows if r["workers"] == 1), None)
    for row in rows:
        row["linear_rps"] = row["workers"] * one if one else None
        row["efficiency"] = row["throughput_rps"] / row["linear_rps"] if one else None


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "workers": r["workers"],
            "efficiency": round(r["efficiency"], 3),
            "target": f">= {MIN_EFFICIENCY}",
            "errors": r["errors"],
            "passed": r["efficiency"] >= MIN_EFFICIENCY and r["errors"] == 0,
        }
        for r in rows
        if r["efficiency"] is not None and r["workers"] > 1
    ]


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'workers':>7}{'clients':>8}{'req/s':>9}{'linear':>9}{'effic.':>8}{'p50 ms':>9}"
        f"{'p90 ms':>9}{'p99 ms':>9}{'errors':>7}{'busy':>6}{'other':>6}  CPU ms/request"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['workers']:>7}{r['clients']:>8}{r['throughput_rps']:>9.1f}"
            f"{report.fixed(r['linear_rps']):>9}{report.fixed(r['efficiency']):>8}"
            f"{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>7}"
            f"{report.fixed(r.get('machine_busy_cores')):>6}"
            f"{report.fixed(r.get('other_busy_cores')):>6}  "
            f"{_cpu_text(r.get('cpu_ms_per_request', {}))}"
        )
    return "\n".join(lines)


LEGEND = (
    "sleep model, 1 gateway + N workers, closed-loop clients in wait mode. linear: N x the "
    "1-worker req/s;\neffic.: req/s over linear. CPU ms/request: w = all workers together."
)


def _cpu_text(per_request: dict[str, float | None]) -> str:
    """The workers' CPU summed (eight columns of w0..w7 would not fit)."""
    workers = [v for k, v in per_request.items() if k.startswith("worker-") and v is not None]
    rest = {k: v for k, v in per_request.items() if not k.startswith("worker-")}
    return report.per_process({"gateway": rest.pop("gateway", None), "w": sum(workers), **rest}, 2)


def format_targets(checks: list[dict[str, Any]]) -> str:
    if not checks:
        return "no target applies: efficiency needs a 1-worker run and one with more workers"
    return "\n".join(
        f"{'PASS' if c['passed'] else 'FAIL'}  scale-out, {c['workers']} workers: efficiency "
        f"{c['efficiency']:.2f} (target {c['target']}){', errors!' if c['errors'] else ''}"
        for c in checks
    )


def plot(rows: list[dict[str, Any]], path: Path, config: ScaleoutConfig) -> None:
    """Throughput against workers, with the linear line and the 0.9x line."""
    workers = [r["workers"] for r in rows]
    heading = f"Scale-out: sleep model ({config.sleep_ms} ms), 1 gateway + N worker processes"
    with report.figure(path, heading) as (throughput, latency):
        throughput.plot(workers, [r["throughput_rps"] for r in rows], "o-", label="measured")
        if rows and rows[0]["linear_rps"] is not None:
            linear = [r["linear_rps"] for r in rows]
            throughput.plot(workers, linear, "--", color="gray", label="linear")
            throughput.plot(workers, [MIN_EFFICIENCY * v for v in linear], ":", color="gray",
                            label=f"{MIN_EFFICIENCY}x linear")  # fmt: skip
        for key, style in (("p50_ms", "o-"), ("p99_ms", "s--")):
            latency.plot(workers, [r[key] for r in rows], style, label=key.replace("_ms", ""))
        for axis, title, unit in (
            (throughput, "Throughput", "completed requests/s"),
            (latency, "Latency", "ms"),
        ):
            axis.set_xticks(workers, [str(w) for w in workers])
            axis.set_xlabel(f"sleep workers (clients = {config.clients_per_worker} x workers)")
            axis.set_ylabel(unit)
            axis.set_title(title)
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=8)
            axis.set_ylim(bottom=0)
