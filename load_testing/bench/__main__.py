"""``python -m load_testing.bench [baseline|batching|scaleout|backlog|all] [options]``: issue 4's
measurements, each on real processes in a namespace of its own, with every answer checked.

- ``baseline`` (the default): inferq against a plain FastAPI + ONNX Runtime app, same load;
  writes bench.json and bench.png.
- ``batching``: big_mlp with batch size 1 against batching; batching.json, batching.png.
- ``scaleout``: the sleep model with 1, 2, 4, 8 workers; scaleout.json, scaleout.png.
- ``backlog``: gateway and worker memory while 100,000 tasks are queued; backlog.json,
  backlog.png.
- ``all``: the four, in this order, with their defaults (and the options given).
- ``floors``: what each part of the path costs alone on this machine (a hop between two
  processes, the RabbitMQ and Redis legs, waking from idle); floors.json.
- ``compare OLD [NEW]``: two checkouts of inferq and the baseline measured in turns, for
  changes smaller than the machine's drift; compare.json.
- ``onnx``: issue 15's: the generic ONNX worker serving digits.onnx against model_b, in turns
  behind one gateway, and the time from upload to first prediction; onnx.json.
- ``doors``: model_b through the native ``?wait=`` path, OIP REST and gRPC ModelInfer, in
  turns, at 1 and 32 clients; a 1M-float tensor through each; doors.json.
- ``auth``: issue 17's: the native ``?wait=`` path with API keys off, on, and on with limits,
  in turns behind two gateways, at 1 and 32 clients; auth.json.

Each prints a table and PASS/FAIL against issue 4's targets. Exit status: 1 when an answer was
wrong or a request failed; with ``--strict``, 2 when a target was missed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from load_testing.bench import (
    auth,
    backlog,
    batching,
    compare,
    doors,
    floors,
    onnx,
    report,
    scaleout,
)
from load_testing.bench.loadgen import MODES
from load_testing.bench.runner import BenchConfig, run_bench
from load_testing.bench.stack import ROOT

COMMANDS = (
    "baseline",
    "batching",
    "scaleout",
    "backlog",
    "all",
    "floors",
    "compare",
    "onnx",
    "doors",
    "auth",
)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def _modes(text: str) -> list[str]:
    modes = [m for m in text.split(",") if m]
    unknown = set(modes) - (set(MODES) - {"baseline"})
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {sorted(unknown)}")
    return modes


def say(line: str) -> None:
    print(line, flush=True)


def _timing(args: argparse.Namespace, config: Any) -> Any:
    if getattr(args, "duration", None) is not None:
        config.duration_s = args.duration
    if getattr(args, "warmup", None) is not None:
        config.warmup_s = args.warmup
    return config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m load_testing.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, timed: bool = True) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help)
        out = BenchConfig().out
        p.add_argument(
            "--out", type=Path, default=out, help=f"where the JSON, the PNG and logs/ go ({out})"
        )
        if timed:
            p.add_argument("--duration", type=float, help="measured seconds per run (default 10)")
            p.add_argument("--warmup", type=float, help="unmeasured seconds before each run")
        p.add_argument(
            "--strict",
            action="store_true",
            help="exit 2 when a target fails (else only wrong answers or errors fail the run)",
        )
        return p

    bench, batched = BenchConfig(), batching.BatchingConfig()
    scaled, queued = scaleout.ScaleoutConfig(), backlog.BacklogConfig()

    p = command("baseline", "inferq against a plain FastAPI app (the default)")
    p.add_argument(
        "--clients", type=_ints, default=bench.clients, help="client counts, comma-separated (1,32)"
    )
    p.add_argument(
        "--modes",
        type=_modes,
        default=bench.modes,
        help="inferq modes: wait, poll (long-poll), interval (default wait,poll)",
    )
    p.add_argument(
        "--workers", type=int, default=bench.workers, help="model_b worker processes (1)"
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        default=bench.interval_s,
        help="seconds between GETs in the interval mode (default 0.02)",
    )
    p.add_argument(
        "--baseline-infer",
        choices=("inline", "thread"),
        default=bench.baseline_infer,
        help="baseline runs ONNX on the event loop or in the thread pool",
    )

    p = command("batching", "big_mlp: batch size 1 against batching")
    p.add_argument("--clients", type=int, default=batched.clients, help="(default 64)")
    p.add_argument(
        "--delays",
        type=_floats,
        default=batched.delays_ms,
        help="batch delays (ms) of the batched runs, comma-separated (default 0,2)",
    )
    p.add_argument("--batch-size", type=int, help="of the batched runs (default: the model's, 64)")
    p.add_argument(
        "--prefetch", type=int, default=0, help="of the batched runs (default: 2 x batch size)"
    )

    p = command("scaleout", "the sleep model with 1, 2, 4, 8 workers")
    p.add_argument(
        "--workers", type=_ints, default=scaled.workers, help="worker counts (default 1,2,4,8)"
    )
    p.add_argument(
        "--clients-per-worker",
        type=int,
        default=scaled.clients_per_worker,
        help="closed-loop clients per worker (default 4)",
    )
    p.add_argument("--sleep-ms", type=int, default=scaled.sleep_ms, help="(default 20)")

    tasks = "tasks to queue (default 100000)"
    p = command("backlog", "gateway and worker memory with a queued backlog", timed=False)
    p.add_argument("--backlog", type=int, default=queued.backlog, help=tasks)
    p.add_argument(
        "--sleep-ms", type=int, default=queued.sleep_ms, help="each task's ms of work (default 50)"
    )
    p.add_argument("--senders", type=int, default=queued.senders, help="concurrent POSTs (64)")
    p.add_argument(
        "--settle",
        type=float,
        default=queued.settle_s,
        help="seconds of sampling after the last POST (default 10)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=queued.time_limit_s,
        help="longest submission, in seconds (default 600)",
    )
    p = command("all", "baseline, batching, scaleout, backlog (defaults)")
    p.add_argument("--backlog", type=int, default=queued.backlog, help=tasks)

    p = command("floors", "what each part of the path costs alone", timed=False)
    p.add_argument(
        "--rounds", type=int, default=floors.ROUNDS, help="measured round trips per part (2000)"
    )

    p = command("compare", "two checkouts of inferq, measured in turns", timed=False)
    p.add_argument("old", type=Path, help="the other checkout (git worktree add DIR COMMIT)")
    p.add_argument("new", type=Path, nargs="?", default=ROOT, help="(default: this checkout)")
    p.add_argument("--clients", type=int, default=32, help="(default 32)")
    p.add_argument("--mode", choices=("wait", "poll", "interval"), default="wait")
    p.add_argument("--rounds", type=int, default=5, help="(default 5)")
    p.add_argument("--window", type=float, default=4.0, help="measured seconds per turn (4)")

    served = onnx.OnnxConfig()
    p = command("onnx", "the generic ONNX worker against model_b; upload to prediction", False)
    p.add_argument("--clients", type=int, default=served.clients, help="(default 32)")
    p.add_argument("--mode", choices=("wait", "poll", "interval"), default=served.mode)
    p.add_argument("--rounds", type=int, default=served.rounds, help="turns of each (default 10)")
    p.add_argument(
        "--window", type=float, default=served.window_s, help="measured seconds per turn (4)"
    )
    p.add_argument(
        "--warmup", type=float, default=served.warmup_s, help="unmeasured seconds per turn (1)"
    )
    p.add_argument(
        "--uploads",
        type=int,
        default=served.uploads,
        help="upload-to-first-prediction repetitions (default 5; 0: none)",
    )
    p.add_argument(
        "--host-poll",
        type=float,
        help="INFERQ_HOST_POLL_S of the model host (default: the setting's, 2 s)",
    )

    opened = doors.DoorsConfig()
    p = command("doors", "native ?wait=, OIP REST and gRPC in turns; a 1M-float tensor", False)
    p.add_argument("--clients", type=_ints, default=opened.clients, help="(default 1,32)")
    p.add_argument("--rounds", type=int, default=opened.rounds, help="turns of each (default 5)")
    p.add_argument("--window", type=float, default=opened.window_s, help="measured s per turn (3)")
    p.add_argument("--warmup", type=float, default=opened.warmup_s, help="unmeasured s per turn")
    p.add_argument(
        "--grpc-channels", type=int, default=opened.grpc_channels, help="shared by gRPC clients (8)"
    )
    p.add_argument("--big-width", type=int, default=opened.big_width, help="floats (1M; 0: none)")
    p.add_argument("--big-repeats", type=int, default=opened.big_repeats, help="(default 5)")

    keyed = auth.AuthConfig()
    p = command("auth", "API keys off, on and with limits, in turns behind two gateways", False)
    p.add_argument("--clients", type=_ints, default=keyed.clients, help="(default 1,32)")
    p.add_argument("--rounds", type=int, default=keyed.rounds, help="turns of each (default 5)")
    p.add_argument("--window", type=float, default=keyed.window_s, help="measured s per turn (3)")
    p.add_argument("--warmup", type=float, default=keyed.warmup_s, help="unmeasured s per turn")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "baseline")  # the harness's first and default measurement
    args = _parser().parse_args(argv)
    runs: dict[str, list[Callable[[argparse.Namespace], tuple[bool, bool]]]] = {
        "baseline": [_baseline],
        "batching": [_batching],
        "scaleout": [_scaleout],
        "backlog": [_backlog],
        "all": [_baseline, _batching, _scaleout, _backlog],
        "floors": [_floors],
        "compare": [_compare],
        "onnx": [_onnx],
        "doors": [_doors],
        "auth": [_auth],
    }
    clean, passed = True, True
    for run in runs[args.command]:
        ok, met = run(args)
        clean, passed = clean and ok, passed and met
        print()
    if not clean:
        return 1
    return 2 if args.strict and not passed else 0


def _baseline(args: argparse.Namespace) -> tuple[bool, bool]:
    config = _timing(args, BenchConfig(out=args.out))
    if args.command == "baseline":
        config.clients, config.modes, config.workers = args.clients, args.modes, args.workers
        config.interval_s, config.baseline_infer = args.poll_interval, args.baseline_infer
    result = run_bench(config, say=say)
    rows = result["rows"]
    _show(result, report.format_table(rows), report.LEGEND + "\n\n" + report.format_waits(rows))
    print(report.format_targets(result["targets"]))
    print(f"\nwrote {config.out / 'bench.json'} and {config.out / 'bench.png'}")
    return _verdict(rows, result["targets"])


def _batching(args: argparse.Namespace) -> tuple[bool, bool]:
    config = _timing(args, batching.BatchingConfig(out=args.out))
    if args.command == "batching":
        config.clients, config.delays_ms = args.clients, args.delays
        config.batch_size, config.prefetch = args.batch_size, args.prefetch
    result = batching.run_batching(config, say=say)
    _show(result, batching.format_table(result["rows"]), batching.LEGEND)
    print(batching.format_targets(result["targets"]))
    print(f"\nwrote {config.out / 'batching.json'} and {config.out / 'batching.png'}")
    return _verdict(result["rows"], result["targets"])


def _scaleout(args: argparse.Namespace) -> tuple[bool, bool]:
    config = _timing(args, scaleout.ScaleoutConfig(out=args.out))
    if args.command == "scaleout":
        config.workers, config.sleep_ms = args.workers, args.sleep_ms
        config.clients_per_worker = args.clients_per_worker
    result = scaleout.run_scaleout(config, say=say)
    _show(result, scaleout.format_table(result["rows"]), scaleout.LEGEND)
    print(scaleout.format_targets(result["targets"]))
    print(f"\nwrote {config.out / 'scaleout.json'} and {config.out / 'scaleout.png'}")
    return _verdict(result["rows"], result["targets"])


def _backlog(args: argparse.Namespace) -> tuple[bool, bool]:
    config = backlog.BacklogConfig(out=args.out, backlog=args.backlog)
    if args.command == "backlog":
        config.sleep_ms, config.senders = args.sleep_ms, args.senders
        config.settle_s, config.time_limit_s = args.settle, args.time_limit
    result = backlog.run_backlog(config, say=say)
    print()
    print(backlog.format_report(result))
    print(backlog.LEGEND)
    print()
    print(backlog.format_targets(result["targets"]))
    print(f"\nwrote {config.out / 'backlog.json'} and {config.out / 'backlog.png'}")
    errors = any(check["errors"] for check in result["targets"])
    return not errors, all(check["passed"] for check in result["targets"])


def _floors(args: argparse.Namespace) -> tuple[bool, bool]:
    config = floors.FloorsConfig(out=args.out, rounds=args.rounds)
    result = floors.run_floors(config, say=say)
    print()
    print(floors.format_table(result))
    print(f"\nwrote {config.out / 'floors.json'}")
    return True, True  # no targets: these figures explain the others


def _compare(args: argparse.Namespace) -> tuple[bool, bool]:
    config = compare.CompareConfig(
        old=args.old,
        new=args.new,
        clients=args.clients,
        mode=args.mode,
        rounds=args.rounds,
        window_s=args.window,
        out=args.out,
    )
    result = compare.run_compare(config, say=say)
    print()
    print(compare.format_summary(result))
    print(f"\nwrote {config.out / 'compare.json'}")
    return result["summary"]["errors"] == 0, True


def _onnx(args: argparse.Namespace) -> tuple[bool, bool]:
    config = onnx.OnnxConfig(
        clients=args.clients,
        mode=args.mode,
        rounds=args.rounds,
        window_s=args.window,
        warmup_s=args.warmup,
        uploads=args.uploads,
        host_poll_s=args.host_poll,
        out=args.out,
    )
    result = onnx.run_onnx(config, say=say)
    print()
    print(onnx.format_report(result))
    print(onnx.format_targets(result["targets"]))
    print(f"\nwrote {config.out / 'onnx.json'}")
    return result["summary"]["errors"] == 0, all(c["passed"] for c in result["targets"])


def _doors(args: argparse.Namespace) -> tuple[bool, bool]:
    config = doors.DoorsConfig(
        clients=args.clients,
        rounds=args.rounds,
        window_s=args.window,
        warmup_s=args.warmup,
        grpc_channels=args.grpc_channels,
        big_width=args.big_width,
        big_repeats=args.big_repeats,
        out=args.out,
    )
    result = doors.run_doors(config, say=say)
    print()
    print(doors.format_report(result))
    print(doors.format_targets(result["targets"]))
    print(f"\nwrote {config.out / 'doors.json'}")
    clean = result["summary"]["errors"] == 0 and not (result["big"] or {}).get("errors")
    return clean, all(c["passed"] for c in result["targets"])


def _auth(args: argparse.Namespace) -> tuple[bool, bool]:
    config = auth.AuthConfig(
        clients=args.clients,
        rounds=args.rounds,
        window_s=args.window,
        warmup_s=args.warmup,
        out=args.out,
    )
    result = auth.run_auth(config, say=say)
    print()
    print(auth.format_report(result))
    print(auth.format_targets(result["targets"]))
    print(f"\nwrote {config.out / 'auth.json'}")
    return result["summary"]["errors"] == 0, all(c["passed"] for c in result["targets"])


def _show(result: dict[str, Any], table: str, legend: str) -> None:
    print()
    print(table)
    print(legend)
    if note := report.disturbance_note(result["rows"]):
        print(note)
    print()


def _verdict(rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> tuple[bool, bool]:
    """(no errors, every target met)."""
    return not any(row["errors"] for row in rows), all(check["passed"] for check in checks)


if __name__ == "__main__":
    sys.exit(main())
