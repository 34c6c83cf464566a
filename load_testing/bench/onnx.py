"""``python -m load_testing.bench onnx``: issue 15's benchmark. The generic ONNX worker
(``inferq worker onnx:digits@1``, serving ``workers/models/weights/digits.onnx`` uploaded
through the gateway's catalog API) against the class worker ``model_b`` (the same file): one
namespace, one gateway, one worker of each, the same closed-loop clients and request bodies,
measured in turns (model_b, onnx, model_b, onnx, ...) so the host's drift falls on both alike.
Target: onnx/model_b throughput >= 0.95 (the median of the rounds).

Then the time from upload to first prediction, with the model host (``inferq host``)
running: POST the file, PUT its deployment to 1 replica, and POST ``/predict/digits@N?wait=``
every ``poll_s`` until one is answered 200 ``succeeded``; in parts (upload and validation,
the deploy call, deploy to the worker live, live to the first prediction), a new version
each repetition, undeployed after it. Writes onnx.json.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from load_testing.bench import report, workloads
from load_testing.bench.measure import Context, Say, Timing, measure
from load_testing.bench.stack import START_TIMEOUT_S, STOP_TIMEOUT_S, System
from load_testing.bench.workloads import AnswerError, Sample, Workload
from load_testing.processes import Popen, wait_until
from workers.models.model_b import WEIGHTS

MIN_THROUGHPUT_RATIO = 0.95
MODEL = "digits"  # the catalog name digits.onnx is uploaded under
HTTP_TIMEOUT_S = 60.0
#: What a prediction of a version is answered before its worker is live: 503 (deployed, no
#: live worker yet) or 404 (the gateway has not heard of it yet).
NOT_YET = frozenset({404, 503})
#: The worker process that serves each system (`OnnxStack.pids`).
WORKERS = {"model_b": "worker-b", "onnx": "worker-onnx"}


@dataclass
class OnnxConfig:
    clients: int = 32
    mode: str = "wait"
    rounds: int = 10  # each: model_b, then onnx
    window_s: float = 4.0
    warmup_s: float = 1.0
    uploads: int = 5  # upload-to-first-prediction repetitions (0: none, no model host)
    poll_s: float = 0.02  # between first-prediction attempts
    host_poll_s: float | None = None  # INFERQ_HOST_POLL_S of the host; None: its default
    out: Path = Path("load_testing/results/bench")


class OnnxStack(System):
    """A gateway that allows model changes from loopback, a ``model_b`` worker, and a generic
    worker of digits.onnx uploaded through the gateway (``digits@1``); `start_host` adds the
    model host, in the same namespace and catalog."""

    system = "inferq"

    def __init__(self, log_dir: Path) -> None:
        env = {"INFERQ_MODEL_CHANGES": "loopback"}
        super().__init__(f"bench-{os.urandom(4).hex()}", log_dir, env=env)
        self.workers: dict[str, Popen] = {}
        self.ref = ""  # the generic worker's served name, digits@1
        self.refs: list[str] = []  # every version uploaded, for the clean-up

    def start(self) -> None:
        # A catalog of this run's own, so the file uploaded first is digits@1.
        (self.log_dir / "catalog.db").unlink(missing_ok=True)
        shutil.rmtree(self.log_dir / "models", ignore_errors=True)
        self.start_gateway(START_TIMEOUT_S)
        self.workers["worker-b"] = self.start_worker("model_b")
        self.wait_live("model_b", 1, START_TIMEOUT_S, self.processes)
        self.ref = self.upload()["ref"]
        self.workers["worker-onnx"] = self.start_worker(f"onnx:{self.ref}")
        self.wait_live(self.ref, 1, START_TIMEOUT_S, self.processes)

    def upload(self) -> dict[str, Any]:
        """POST digits.onnx as the next version of `MODEL`; its version JSON."""
        answer = httpx.post(
            f"{self.url}/models/{MODEL}/versions",
            content=WEIGHTS.read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
            timeout=HTTP_TIMEOUT_S,
        )
        if answer.status_code != 201:
            raise RuntimeError(f"upload answered {answer.status_code}: {answer.text}")
        version: dict[str, Any] = answer.json()
        self.refs.append(version["ref"])
        return version

    def deploy(self, number: int, replicas: int) -> None:
        answer = httpx.put(
            f"{self.url}/models/{MODEL}/versions/{number}/deployment",
            json={"replicas": replicas},
            timeout=HTTP_TIMEOUT_S,
        )
        if answer.status_code != 200:
            raise RuntimeError(f"deployment answered {answer.status_code}: {answer.text}")

    def start_host(self, poll_s: float | None) -> Popen:
        env = {} if poll_s is None else {"INFERQ_HOST_POLL_S": f"{poll_s:g}"}
        return self.spawn("host", "host", **env)

    def pids(self) -> dict[str, int]:
        return {"gateway": self.processes[0].pid, **{k: p.pid for k, p in self.workers.items()}}

    def close(self, models: Any = (), grace_s: float = STOP_TIMEOUT_S) -> None:
        super().close(["model_b", *self.refs, *models], grace_s)


def generic_digits(ref: str, samples: list[Sample] | None = None) -> Workload:
    """model_b's digits to the generic worker ``ref``. Its answer is the graph's outputs as
    protobuf JSON: ``label`` is an int64, which JSON carries as a string (``"7"``)."""

    def check(result: dict[str, Any], sample: Sample) -> None:
        label = result.get("label")
        if not isinstance(label, str | int) or str(label) != str(sample.label):
            raise AnswerError("wrong label")
        probabilities = result.get("probabilities")
        if not isinstance(probabilities, list) or len(probabilities) != 10:
            raise AnswerError("bad probabilities")

    return Workload(ref, samples or workloads.correct_samples(), check)


def run_onnx(config: OnnxConfig, say: Say = print) -> dict[str, Any]:
    config.out.mkdir(parents=True, exist_ok=True)
    context = Context.probe(say)
    timing = Timing(config.window_s, config.warmup_s)
    samples = workloads.correct_samples()
    rounds: list[dict[str, dict[str, Any]]] = []
    uploads: list[dict[str, float]] = []
    with OnnxStack(config.out / "logs" / "onnx") as stack:
        systems = {
            "model_b": workloads.digits(samples),
            "onnx": generic_digits(stack.ref, samples),
        }
        for n in range(config.rounds):
            measured = {}
            for name, workload in systems.items():
                row = measure(
                    stack, workload, config.mode, config.clients, timing, context.services, say
                )
                measured[name] = {**row, "system": name, "model": workload.model}
            rounds.append(measured)
            ratio = measured["onnx"]["throughput_rps"] / measured["model_b"]["throughput_rps"]
            say(f"round {n + 1}: onnx/model_b throughput {ratio:.3f}")
        if config.uploads:
            host = stack.start_host(config.host_poll_s)
            for n in range(config.uploads):
                uploads.append(upload_to_prediction(stack, samples[n % len(samples)], config))
                say(
                    f"upload {n + 1}: first prediction {uploads[-1]['total_s']:.2f} s after "
                    f"the upload began (worker live {uploads[-1]['deploy_to_live_s']:.2f} s "
                    "after the deploy)"
                )
                if host.poll() is not None:
                    raise RuntimeError(f"the model host exited\n{stack.logs()}")
    summary = summarize(rounds)
    upload_summary = summarize_uploads(uploads)
    result = {
        **context.as_json(),
        "config": {**asdict(config), "out": str(config.out)},
        "rounds": rounds,
        "summary": summary,
        "uploads": uploads,
        "upload_summary": upload_summary,
        "targets": [target(summary)],
    }
    report.write_json(result, config.out / "onnx.json")
    return result


def upload_to_prediction(stack: OnnxStack, sample: Sample, config: OnnxConfig) -> dict[str, float]:
    """One upload of digits.onnx to its first prediction, in parts (seconds); the version is
    undeployed afterwards and its worker gone before this returns."""
    started = time.perf_counter()
    version = stack.upload()
    uploaded = time.perf_counter()
    stack.deploy(version["version"], 1)
    deployed = time.perf_counter()
    ref, live_at, attempts = version["ref"], None, 0
    check = generic_digits(ref, [sample]).check
    with httpx.Client(base_url=stack.url, timeout=HTTP_TIMEOUT_S) as client:
        while True:
            if time.perf_counter() - deployed > START_TIMEOUT_S:
                raise TimeoutError(f"no prediction of {ref} {START_TIMEOUT_S:g} s after deploy")
            if live_at is None and stack.live_workers(ref) >= 1:
                live_at = time.perf_counter()
            attempts += 1
            answer = client.post(
                f"/predict/{ref}?wait=10",
                content=sample.body,
                headers={"Content-Type": "application/json"},
            )
            if answer.status_code == 200:
                view = orjson.loads(answer.content)
                if view.get("status") != "succeeded":
                    raise RuntimeError(f"the first prediction of {ref}: {view}")
                check(view.get("result") or {}, sample)
                break
            if answer.status_code not in NOT_YET:
                raise RuntimeError(f"predict answered {answer.status_code}: {answer.text}")
            time.sleep(config.poll_s)
    predicted = time.perf_counter()
    live_at = live_at or predicted  # live between the last check and the answer
    stack.deploy(version["version"], 0)
    wait_until(lambda: stack.live_workers(ref) == 0, STOP_TIMEOUT_S, f"{ref}'s worker to stop")
    return {
        "version": version["version"],
        "upload_s": uploaded - started,
        "deploy_call_s": deployed - uploaded,
        "deploy_to_live_s": live_at - deployed,
        "live_to_prediction_s": predicted - live_at,
        "total_s": predicted - started,
        "predict_attempts": attempts,
    }


def summarize(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Medians over the rounds of each system, and onnx/model_b per round."""
    if not rounds:
        return {"ratios": [], "throughput_ratio": None, "errors": 0}
    summary: dict[str, Any] = {
        name: {
            metric: statistics.median(r[name][metric] for r in rounds)
            for metric in ("throughput_rps", "p50_ms", "p99_ms")
        }
        for name in ("model_b", "onnx")
    }
    # CPU per request of the gateway and the serving worker: less disturbed by other users of
    # the machine than the throughput is.
    for name, worker in WORKERS.items():
        for process, key in (("gateway", "gateway_cpu_ms"), (worker, "worker_cpu_ms")):
            values = [r[name].get("cpu_ms_per_request", {}).get(process) for r in rounds]
            known = [v for v in values if v is not None]
            summary[name][key] = statistics.median(known) if known else None
    ratios = [r["onnx"]["throughput_rps"] / r["model_b"]["throughput_rps"] for r in rounds]
    summary.update(
        ratios=ratios,
        throughput_ratio=statistics.median(ratios),
        ratio_range=[min(ratios), max(ratios)],
        errors=sum(r[name]["errors"] for r in rounds for name in r),
    )
    return summary


def summarize_uploads(uploads: list[dict[str, float]]) -> dict[str, float]:
    """The median of each part over the repetitions."""
    parts = ("upload_s", "deploy_call_s", "deploy_to_live_s", "live_to_prediction_s", "total_s")
    if not uploads:
        return {}
    return {part: statistics.median(u[part] for u in uploads) for part in parts}


def target(summary: dict[str, Any]) -> dict[str, Any]:
    ratio = summary["throughput_ratio"]
    return {
        "metric": "throughput_ratio",
        "value": None if ratio is None else round(ratio, 3),
        "target": f">= {MIN_THROUGHPUT_RATIO}",
        "errors": summary["errors"],
        "passed": ratio is not None and ratio >= MIN_THROUGHPUT_RATIO and not summary["errors"],
    }


def format_report(result: dict[str, Any]) -> str:
    s, c = result["summary"], result["config"]
    lines = [
        f"{c['mode']}, {c['clients']} clients, {len(result['rounds'])} rounds of "
        f"{c['window_s']:g} s per system (model_b, then onnx); medians over the rounds",
        f"{'system':<9}{'model':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU ms/request: gateway':>25}{'worker':>8}",
    ]
    if result["rounds"]:
        for name in ("model_b", "onnx"):
            model = result["rounds"][0][name]["model"]
            row = s[name]
            lines.append(
                f"{name:<9}{model:<10}{row['throughput_rps']:>9.1f}{row['p50_ms']:>9.2f}"
                f"{row['p99_ms']:>9.2f}{_ms(row['gateway_cpu_ms']):>25}"
                f"{_ms(row['worker_cpu_ms']):>8}"
            )
        low, high = s["ratio_range"]
        lines.append(
            f"onnx/model_b throughput: median {s['throughput_ratio']:.3f}, range {low:.3f}-"
            f"{high:.3f}; per round " + " ".join(f"{v:.3f}" for v in s["ratios"])
        )
        busy = [r[name].get("other_busy_cores") or 0.0 for r in result["rounds"] for name in r]
        lines.append(f"other processes' cores during the rounds: at most {max(busy):.2f}")
    lines.append(f"errors: {s['errors']}")
    if uploads := result["uploads"]:
        u = result["upload_summary"]
        lines += [
            "",
            f"upload to first prediction, {len(uploads)} new versions, median s: upload and "
            f"validation {u['upload_s']:.3f}, deploy call {u['deploy_call_s']:.3f}, deploy to "
            f"worker live {u['deploy_to_live_s']:.3f}, live to first prediction "
            f"{u['live_to_prediction_s']:.3f}; total {u['total_s']:.3f} (each: "
            + " ".join(f"{x['total_s']:.2f}" for x in uploads)
            + ")",
        ]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_targets(checks: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{'PASS' if c['passed'] else 'FAIL'}  onnx/model_b throughput {report.fixed(c['value'])}"
        f" (target {c['target']}{', errors!' if c['errors'] else ''})"
        for c in checks
    )
