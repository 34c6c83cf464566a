"""Turns measured rows into what people read: ratios to the baseline, the targets of issue 4,
a table, bench.json and bench.png."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Issue 4's targets, same run, same machine: inferq against the baseline.
THROUGHPUT_CLIENTS, MIN_THROUGHPUT_RATIO = 32, 0.6
LATENCY_CLIENTS, MAX_P50_RATIO = 1, 2.5


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each inferq row gets its throughput and p50 as multiples of the baseline's at the same
    client count (throughput: higher is better; p50: lower is better)."""
    baseline = {r["clients"]: r for r in rows if r["system"] == "baseline"}
    for row in rows:
        base = baseline.get(row["clients"])
        if base is None or base["throughput_rps"] <= 0 or base["p50_ms"] <= 0:
            row["throughput_ratio"] = row["p50_ratio"] = None
            continue
        row["throughput_ratio"] = row["throughput_rps"] / base["throughput_rps"]
        row["p50_ratio"] = row["p50_ms"] / base["p50_ms"]


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PASS/FAIL per inferq mode for each target whose client count was measured."""
    checks = []
    for row in rows:
        if row["system"] == "baseline":
            continue
        if row["clients"] == THROUGHPUT_CLIENTS and row["throughput_ratio"] is not None:
            checks.append(
                _check(row, "throughput_ratio", ">=", MIN_THROUGHPUT_RATIO,
                       row["throughput_ratio"] >= MIN_THROUGHPUT_RATIO)
            )  # fmt: skip
        if row["clients"] == LATENCY_CLIENTS and row["p50_ratio"] is not None:
            checks.append(
                _check(row, "p50_ratio", "<=", MAX_P50_RATIO, row["p50_ratio"] <= MAX_P50_RATIO)
            )
    return checks


def _check(row: dict[str, Any], metric: str, op: str, bound: float, ok: bool) -> dict[str, Any]:
    return {
        "mode": row["mode"],
        "clients": row["clients"],
        "metric": metric,
        "value": round(row[metric], 3),
        "target": f"{op} {bound}",
        "errors": row["errors"],
        "passed": bool(ok and row["errors"] == 0),
    }


DISTURBED_CORES = 0.25


def disturbance_note(rows: list[dict[str, Any]]) -> str | None:
    """A warning when other processes took a noticeable share of the cores during a run."""
    worst = max(rows, key=lambda r: r.get("other_busy_cores") or 0.0, default=None)
    other = (worst or {}).get("other_busy_cores") or 0.0
    if worst is None or other < DISTURBED_CORES:
        return None
    return (
        f"warning: other processes kept {other:.2f} cores busy during "
        f"{worst['system']} {worst['mode']} at {worst['clients']} client(s); "
        "figures from a busy machine are low: run again when it is quiet"
    )


def format_targets(checks: list[dict[str, Any]]) -> str:
    if not checks:
        return (
            f"no target applies: they compare at {LATENCY_CLIENTS} and {THROUGHPUT_CLIENTS} "
            "client(s)"
        )
    return "\n".join(
        f"{'PASS' if c['passed'] else 'FAIL'}  {c['mode']:<8} {c['clients']:>3} clients: "
        f"{c['metric']} {c['value']:.2f} (target {c['target']}"
        f"{', errors!' if c['errors'] else ''})"
        for c in checks
    )


def format_table(rows: list[dict[str, Any]]) -> str:
    cpu = [per_process(r.get("cpu_ms_per_request", {}), 2) for r in rows]
    width = max([len("CPU ms/request"), *map(len, cpu)]) + 2
    head = (
        f"{'system':<9}{'mode':<9}{'clients':>7}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}"
        f"{'p99 ms':>9}{'errors':>7}{'thr x':>7}{'p50 x':>7}{'busy':>6}{'other':>6}  "
        f"{'CPU ms/request':<{width}}{'RSS MiB'}"
    )
    lines = [head, "-" * len(head)]
    for r, cpu_text in zip(rows, cpu, strict=True):
        lines.append(
            f"{r['system']:<9}{r['mode']:<9}{r['clients']:>7}{r['throughput_rps']:>9.1f}"
            f"{r['p50_ms']:>9.2f}{r['p90_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>7}"
            f"{fixed(r['throughput_ratio']):>7}{fixed(r['p50_ratio']):>7}"
            f"{fixed(r.get('machine_busy_cores')):>6}{fixed(r.get('other_busy_cores')):>6}  "
            f"{cpu_text:<{width}}{per_process(r['rss_mib'], 0, skip=('loadgen',))}"
        )
    return "\n".join(lines)


def format_waits(rows: list[dict[str, Any]]) -> str:
    """Each row's run-queue wait per request, by process."""
    lines = [
        "waiting for a core, ms per request: time each process was runnable but not running (all "
        "its threads;\nit adds to a request's latency where the process was on the request's path)"
    ]
    for r in rows:
        waits = per_process(r.get("runqueue_wait_ms_per_request", {}), 2)
        lines.append(f"  {r['system']:<9}{r['mode']:<9}{r['clients']:>4}  {waits or '-'}")
    return "\n".join(lines)


LEGEND = (
    "thr x, p50 x: inferq over the baseline at the same client count. busy: cores busy on the "
    "whole machine\nin the window; other: busy minus the processes named under CPU ms/request "
    "(gw gateway, w0.. workers,\napp baseline, lg load generator, mq RabbitMQ, rd Redis: the "
    "last two shared, whoever used them)."
)
SHORT = {"gateway": "gw", "baseline": "app", "loadgen": "lg", "rabbitmq": "mq", "redis": "rd"}


def per_process(values: dict[str, Any], digits: int, skip: tuple[str, ...] = ()) -> str:
    return " ".join(
        f"{SHORT.get(name, name.replace('worker-', 'w'))} {value:.{digits}f}"
        for name, value in values.items()
        if value is not None and name not in skip
    )


def fixed(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")


@contextlib.contextmanager
def figure(path: Path, title: str) -> Iterator[Any]:
    """Two panels side by side, saved as ``path`` under ``title``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawing, panels = plt.subplots(1, 2, figsize=(11, 4.2))
    try:
        yield panels
        drawing.suptitle(title)
        drawing.tight_layout()
        drawing.savefig(path, dpi=110)
    finally:
        plt.close(drawing)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Two panels against clients: p50 (solid) and p99 (dashed) latency; throughput."""
    series: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        label = "baseline" if row["system"] == "baseline" else f"inferq {row['mode']}"
        series.setdefault(label, []).append(row)
    clients = sorted({row["clients"] for row in rows})
    heading = "inferq vs plain FastAPI + ONNX Runtime (model_b), same machine, same run"
    with figure(path, heading) as (latency, throughput):
        for index, (label, points) in enumerate(series.items()):
            points.sort(key=lambda r: r["clients"])
            x = [p["clients"] for p in points]
            color = f"C{index}"
            latency.plot(x, [p["p50_ms"] for p in points], "o-", color=color, label=f"{label} p50")
            latency.plot(x, [p["p99_ms"] for p in points], "s--", color=color, label=f"{label} p99")
            throughput.plot(
                x, [p["throughput_rps"] for p in points], "o-", color=color, label=label
            )
        for axis, title, unit in (
            (latency, "Latency", "ms (log)"),
            (throughput, "Throughput", "completed requests/s"),
        ):
            axis.set_xscale("log", base=2)
            axis.set_xticks(clients, [str(c) for c in clients])
            axis.set_xlabel("closed-loop clients")
            axis.set_ylabel(unit)
            axis.set_title(title)
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=8)
        latency.set_yscale("log")
        throughput.set_ylim(bottom=0)
