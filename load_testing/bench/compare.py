"""``python -m load_testing.bench compare OLD [NEW]``: two checkouts of inferq (``git worktree
add /tmp/old COMMIT``; NEW defaults to this one) and the baseline, all running at once, driven
one at a time in short windows, round after round, so that the host's drift falls on all three
alike; NEW/OLD per round shows the noise. Writes compare.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load_testing.bench import procstat, report
from load_testing.bench.loadgen import LoadResult, run_load
from load_testing.bench.stack import ROOT, Baseline, InferqStack, System
from load_testing.bench.workloads import digits


@dataclass
class CompareConfig:
    old: Path
    new: Path = ROOT
    clients: int = 32
    mode: str = "wait"
    rounds: int = 5
    window_s: float = 4.0
    warmup_s: float = 1.0
    out: Path = Path("load_testing/results/bench")
    env: dict[str, str] = field(default_factory=dict)  # to both stacks


def run_compare(config: CompareConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    logs = config.out / "logs"
    with contextlib.ExitStack() as running:
        systems: dict[str, tuple[System, str]] = {
            "baseline": (running.enter_context(Baseline(logs / "baseline")), "baseline")
        }
        for name, root in (("old", config.old), ("new", config.new)):
            stack = InferqStack(logs / name, root=root.resolve(), env=config.env)
            systems[name] = (running.enter_context(stack), config.mode)
        rounds: list[dict[str, dict[str, Any]]] = []
        for n in range(config.rounds):
            measured = {}
            for name, (system, mode) in systems.items():
                load: LoadResult[None] = asyncio.run(
                    run_load(
                        system.url,
                        mode,
                        config.clients,
                        config.window_s,
                        config.warmup_s,
                        digits(),
                    )
                )
                measured[name] = load.summary()
            rounds.append(measured)
            say(
                f"round {n + 1}: "
                + ", ".join(
                    f"{name} {m['throughput_rps']:.0f}/s p50 {m['p50_ms']:.2f} ms"
                    for name, m in measured.items()
                )
            )
    result = {
        "config": {
            "old": str(config.old),
            "new": str(config.new),
            "clients": config.clients,
            "mode": config.mode,
            "rounds": config.rounds,
            "window_s": config.window_s,
            "env": config.env,
        },
        "machine": procstat.machine_info(),
        "rounds": rounds,
        "summary": _summary(rounds),
    }
    config.out.mkdir(parents=True, exist_ok=True)
    report.write_json(result, config.out / "compare.json")
    return result


def _summary(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Medians over the rounds, and NEW/OLD per round."""

    def median(name: str, metric: str) -> float:
        return statistics.median(r[name][metric] for r in rounds)

    summary: dict[str, Any] = {
        name: {metric: median(name, metric) for metric in ("throughput_rps", "p50_ms")}
        for name in ("baseline", "old", "new")
    }
    # A round where OLD completed nothing (a stall longer than the window) has no ratio.
    summary["new_over_old"] = {
        metric: [r["new"][metric] / r["old"][metric] for r in rounds if r["old"][metric]]
        for metric in ("throughput_rps", "p50_ms")
    }
    summary["errors"] = sum(r[name]["errors"] for r in rounds for name in r)
    return summary


def format_summary(result: dict[str, Any]) -> str:
    s, c = result["summary"], result["config"]
    base = s["baseline"]
    lines = [
        f"{c['mode']}, {c['clients']} client(s), {c['rounds']} rounds of {c['window_s']:g} s "
        "each (medians over the rounds)",
        f"{'system':9} {'req/s':>8} {'p50 ms':>8} {'thr x':>6} {'p50 x':>6}",
    ]
    for name in ("baseline", "old", "new"):
        row = s[name]
        lines.append(
            f"{name:9} {row['throughput_rps']:8.1f} {row['p50_ms']:8.3f} "
            f"{row['throughput_rps'] / base['throughput_rps']:6.2f} "
            f"{row['p50_ms'] / base['p50_ms']:6.2f}"
        )
    for metric, label in (("throughput_rps", "req/s"), ("p50_ms", "p50")):
        per_round = s["new_over_old"][metric]
        middle = f"{statistics.median(per_round):.3f}" if per_round else "-"
        each = " ".join(f"{v:.2f}" for v in per_round)
        lines.append(f"new/old {label}: median {middle}, per round {each}")
    lines.append(f"errors: {s['errors']}")
    return "\n".join(lines)
