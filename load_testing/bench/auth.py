"""``python -m load_testing.bench auth``: issue 17's benchmark, what API keys cost the native
``POST /predict/model_b?wait=`` path. Two gateways of one namespace and catalog in front of
one model_b worker, measured in turns (then the reverse order, round after round, so the
host's drift falls on all alike), at 1 and 32 clients (`load_testing.bench.doors`' clients,
every answer checked):

- ``off``: the gateway with ``INFERQ_AUTH=off`` (no key looked at: the baseline);
- ``on``: the gateway with ``INFERQ_AUTH=on``, a key with the ``predict`` scope and no limits
  (the key's record cached, its secret hashed and compared on every request);
- ``limited``: the same gateway and a key with limits it never reaches (a rate of 10^6 a
  second and 10^5 tasks in flight): one more Redis script per task, and the worker's release.

Target: on/off throughput >= 0.95 at 32 clients (the median of the rounds). Writes auth.json.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from catalog.db import Catalog
from load_testing.bench import report
from load_testing.bench.doors import MODEL, digits, median_cpu, run_door
from load_testing.bench.measure import Context, Say
from load_testing.bench.stack import START_TIMEOUT_S, STOP_TIMEOUT_S, System
from load_testing.processes import free_port

VARIANTS = ("off", "on", "limited")
MIN_RATIO = 0.95


@dataclass
class AuthConfig:
    clients: list[int] = field(default_factory=lambda: [1, 32])
    rounds: int = 5
    window_s: float = 3.0
    warmup_s: float = 1.0
    out: Path = Path("load_testing/results/bench")


class AuthStack(System):
    """A gateway without authentication, one that requires keys, a model_b worker, and the
    two keys."""

    system = "inferq"

    def __init__(self, log_dir: Path) -> None:
        super().__init__(f"bench-{os.urandom(4).hex()}", log_dir)
        self.urls: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.metrics_port = 0

    def start(self) -> None:
        (self.log_dir / "catalog.db").unlink(missing_ok=True)
        with Catalog.open(self.env["INFERQ_CATALOG_URL"]) as catalog:
            self.tokens["on"] = catalog.create_key("bench", ["predict", "read"]).secret
            self.tokens["limited"] = catalog.create_key(
                "bench-limited", ["predict"], rate=1_000_000, per="second", max_in_flight=100_000
            ).secret
        self.api_key = self.tokens["on"]  # the harness's own reads (live workers)
        self.env["INFERQ_AUTH"] = "off"
        self.urls["off"] = self.start_gateway(START_TIMEOUT_S)
        self.env["INFERQ_AUTH"] = "on"
        self.urls["on"] = self.urls["limited"] = self.start_gateway(START_TIMEOUT_S)
        self.metrics_port = free_port()
        self.start_worker(MODEL, INFERQ_METRICS_PORT=str(self.metrics_port))
        self.wait_live(MODEL, 1, START_TIMEOUT_S, self.processes)

    def pids(self) -> dict[str, int]:
        gateway_off, gateway_on, worker = (p.pid for p in self.processes[:3])
        return {"gateway": gateway_on, "gateway_off": gateway_off, "worker": worker}

    def headers(self, variant: str) -> dict[str, str]:
        token = self.tokens.get(variant)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def close(self, models: Any = (), grace_s: float = STOP_TIMEOUT_S) -> None:
        super().close([MODEL, *models], grace_s)


def run_auth(config: AuthConfig, say: Say = print) -> dict[str, Any]:
    config.out.mkdir(parents=True, exist_ok=True)
    context = Context.probe(say)
    samples = digits()
    rounds: list[dict[str, dict[str, Any]]] = []
    with AuthStack(config.out / "logs" / "auth") as stack:
        pids = {**stack.pids(), "loadgen": os.getpid(), **context.services}
        for n in range(config.rounds):
            measured: dict[str, dict[str, Any]] = {}
            for clients in config.clients:
                for variant in VARIANTS if n % 2 == 0 else VARIANTS[::-1]:
                    row = uvloop.run(
                        run_door(
                            "native",
                            stack.urls[variant],
                            "",
                            clients,
                            config.window_s,
                            config.warmup_s,
                            samples,
                            1,
                            pids,
                            stack.metrics_port,
                            stack.headers(variant),
                        )
                    )
                    measured[f"{clients}/{variant}"] = {**row, "variant": variant}
                rps = {v: measured[f"{clients}/{v}"]["throughput_rps"] for v in VARIANTS}
                say(
                    f"round {n + 1}, {clients} client(s): "
                    + " ".join(f"{v} {rps[v]:.0f}/s" for v in VARIANTS)
                    + " ("
                    + " ".join(f"{v}/off {rps[v] / rps['off']:.3f}" for v in VARIANTS[1:])
                    + ")"
                )
            rounds.append(measured)
    summary = summarize(rounds, config.clients)
    result = {
        **context.as_json(),
        "config": {**asdict(config), "out": str(config.out)},
        "rounds": rounds,
        "summary": summary,
        "targets": targets(summary),
    }
    report.write_json(result, config.out / "auth.json")
    return result


def summarize(rounds: list[dict[str, dict[str, Any]]], client_counts: list[int]) -> dict[str, Any]:
    summary: dict[str, Any] = {"errors": sum(r["errors"] for m in rounds for r in m.values())}
    for clients in client_counts:
        per: dict[str, Any] = {}
        for variant in VARIANTS:
            rows = [m[f"{clients}/{variant}"] for m in rounds]
            per[variant] = {
                metric: statistics.median(r[metric] for r in rows)
                for metric in ("throughput_rps", "p50_ms", "p99_ms")
            }
            # The gateway that served this variant: the keyed one, or the open one.
            gateway = "gateway_off" if variant == "off" else "gateway"
            per[variant]["gateway_cpu_ms"] = median_cpu(rows, gateway)
        for variant in VARIANTS[1:]:
            ratios = [
                m[f"{clients}/{variant}"]["throughput_rps"] / m[f"{clients}/off"]["throughput_rps"]
                for m in rounds
                if m[f"{clients}/off"]["throughput_rps"]
            ]
            per[variant]["ratio"] = statistics.median(ratios) if ratios else None
            per[variant]["ratio_range"] = [min(ratios), max(ratios)] if ratios else None
        summary[str(clients)] = per
    return summary


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    per = summary.get("32")
    if per is None:
        return []
    ratio = per["on"]["ratio"]
    return [
        {
            "variant": "on",
            "clients": 32,
            "value": None if ratio is None else round(ratio, 3),
            "target": f">= {MIN_RATIO}",
            "errors": summary["errors"],
            "passed": ratio is not None and ratio >= MIN_RATIO and not summary["errors"],
        }
    ]


def format_report(result: dict[str, Any]) -> str:
    s, c = result["summary"], result["config"]
    lines = [
        f"{len(result['rounds'])} rounds of {c['window_s']:g} s per variant and client count "
        "(off, on, limited, then reversed); medians over the rounds",
        f"{'variant':<9}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x off':>8}"
        f"{'range':>14}{'gateway CPU ms/req':>20}",
    ]
    for clients in c["clients"]:
        per = s.get(str(clients))
        if not per:
            continue
        for variant in VARIANTS:
            row = per[variant]
            ratio = "1" if variant == "off" else report.fixed(row["ratio"])
            span = (
                ""
                if variant == "off" or not row["ratio_range"]
                else "{:.3f}-{:.3f}".format(*row["ratio_range"])
            )
            cpu = row["gateway_cpu_ms"]
            lines.append(
                f"{variant:<9}{clients:>8}{row['throughput_rps']:>9.1f}{row['p50_ms']:>9.2f}"
                f"{row['p99_ms']:>9.2f}{ratio:>8}{span:>14}"
                f"{'-' if cpu is None else f'{cpu:.3f}':>20}"
            )
    lines.append(f"errors: {s['errors']}")
    return "\n".join(lines)


def format_targets(checks: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{'PASS' if c['passed'] else 'FAIL'}  auth on/off throughput, {c['clients']} clients: "
        f"{report.fixed(c['value'])} (target {c['target']}{', errors!' if c['errors'] else ''})"
        for c in checks
    )
