"""The baseline comparison: the baseline and the inferq stack, both started, measured in turn
at each client count (the baseline, then inferq in each mode) with the same load generator;
then ratios, targets, bench.json and bench.png."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from load_testing.bench import report, workloads
from load_testing.bench.measure import Context, Say, Timing, measure
from load_testing.bench.stack import Baseline, InferqStack


@dataclass
class BenchConfig:
    clients: list[int] = field(default_factory=lambda: [1, 32])
    modes: list[str] = field(default_factory=lambda: ["wait", "poll"])
    duration_s: float = 10.0
    warmup_s: float = 2.0
    workers: int = 1
    out: Path = Path("load_testing/results/bench")
    wait_s: float = 10.0  # ?wait= of the wait and poll modes
    interval_s: float = 0.02  # the interval mode's polling period
    baseline_infer: str = "inline"  # or "thread": see load_testing/bench/baseline.py


def run_bench(config: BenchConfig, say: Say = print) -> dict[str, Any]:
    """Runs everything ``config`` asks for; writes bench.json and bench.png into ``out``."""
    config.out.mkdir(parents=True, exist_ok=True)
    workload = workloads.digits()
    context = Context.probe(say)
    say(f"{len(workload.samples)} checked samples")
    timing = Timing(config.duration_s, config.warmup_s, config.wait_s, config.interval_s)
    rows = []
    with (
        Baseline(config.out / "logs", config.baseline_infer) as baseline,
        InferqStack(config.out / "logs", config.workers) as stack,
    ):
        # Both are up; one is measured while the other idles. Client count by client count,
        # the baseline then inferq: the rows a ratio is drawn from are measured within a
        # minute of each other, so the drift of a shared host falls on both alike.
        for clients in config.clients:
            rows.append(
                measure(baseline, workload, "baseline", clients, timing, context.services, say)
            )
            for mode in config.modes:
                rows.append(measure(stack, workload, mode, clients, timing, context.services, say))
    order = ["baseline", *config.modes]
    rows.sort(key=lambda row: (order.index(row["mode"]), row["clients"]))  # as the table reads
    report.add_ratios(rows)
    result = {
        **context.as_json(),
        "config": {**asdict(config), "out": str(config.out)},
        "rows": rows,
        "targets": report.targets(rows),
    }
    report.write_json(result, config.out / "bench.json")
    report.plot(rows, config.out / "bench.png")
    return result
