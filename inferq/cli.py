"""The ``inferq`` command: run the gateway, workers or the whole stack; query a gateway."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from inferq.logs import configure_logging
from inferq.settings import GatewaySettings, WorkerSettings, health_file
from inferq.supervisor import Child, supervise
from inferq.tracing import setup_tracing

ENSURE_SERVICES = Path(__file__).resolve().parent.parent / "scripts" / "ensure_services.sh"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferq", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("up", help="RabbitMQ and Redis, a gateway on :8000, model_a and model_b")

    gateway = commands.add_parser("gateway", help="run the HTTP gateway")
    gateway.add_argument("--host")
    gateway.add_argument("--port", type=int)

    worker = commands.add_parser("worker", help="serve a model from its queue")
    worker.add_argument("target", help="built-in name (model_a, model_b, sleep) or module:Class")
    worker.add_argument(
        "--app-dir",
        default=".",
        help="folder TARGET's module is imported from, as uvicorn's (default: the current one)",
    )
    worker.add_argument("--replicas", type=int, default=1, help="worker processes to run")
    worker.add_argument("--metrics-port", type=int, help="Prometheus port (replica i: +i)")
    worker.add_argument(
        "--check", action="store_true", help="exit 0 if a worker of TARGET here is healthy"
    )

    for name, text in (("models", "list live models"), ("predict", "send one prediction")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument(
            "--url", default=os.environ.get("INFERQ_GATEWAY_URL", "http://127.0.0.1:8000")
        )
        if name == "predict":
            sub.add_argument("model")
            sub.add_argument("json", help="the request message as JSON")
            sub.add_argument(
                "--wait", type=float, default=10.0, help="seconds to wait for the result"
            )

    args = parser.parse_args(argv)
    configure_logging()
    if args.command in ("gateway", "worker"):
        setup_tracing(f"inferq-{args.command}")
    return int(COMMANDS[args.command](args) or 0)


def run_up(_: argparse.Namespace) -> int:
    if ENSURE_SERVICES.exists():
        subprocess.run(["bash", str(ENSURE_SERVICES)], check=True)
    me = [sys.executable, "-m", "inferq.cli"]
    # The children write to our pipe, not a terminal: say which format the terminal wants.
    terminal = sys.stdout.isatty() and "INFERQ_LOG_FORMAT" not in os.environ
    env = {"INFERQ_LOG_FORMAT": "text"} if terminal else None
    return supervise(
        [
            Child("gateway", [*me, "gateway"], env),
            Child("model_a", [*me, "worker", "model_a"], env),
            Child("model_b", [*me, "worker", "model_b"], env),
        ]
    )


def run_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from api_service.app import create_app

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = GatewaySettings(**overrides)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        # Nothing reads the client's address, which is all X-Forwarded-* would correct.
        proxy_headers=False,
        server_header=False,  # no need to tell every client the server's name
        timeout_graceful_shutdown=10,
    )
    return 0


def run_worker(args: argparse.Namespace) -> int:
    import uvloop

    from workers.loader import load_model_class
    from workers.runtime import Worker

    overrides = {"metrics_port": args.metrics_port} if args.metrics_port else {}
    settings = WorkerSettings(**overrides)  # type: ignore[arg-type]
    try:
        model_class = load_model_class(args.target, args.app_dir)
    except ValueError as error:
        print(f"inferq worker: {error}", file=sys.stderr)
        return 2
    if args.check:
        return check_worker(settings, model_class.name)
    if args.replicas > 1:
        app_dir = str(Path(args.app_dir).resolve())
        me = [sys.executable, "-m", "inferq.cli", "worker", args.target, "--app-dir", app_dir]
        port = settings.metrics_port
        return supervise(
            [
                Child(
                    f"{args.target}-{i}",
                    me,
                    {"INFERQ_METRICS_PORT": str(port + i)} if port else None,
                )
                for i in range(args.replicas)
            ]
        )
    model = model_class(settings)
    uvloop.run(Worker(model, settings).run())
    return 0


def check_worker(settings: WorkerSettings, model: str) -> int:
    """Liveness probe: a worker of ``model`` on this machine heartbeated recently."""
    pattern = Path(health_file(settings, model))
    ages = [time.time() - p.stat().st_mtime for p in pattern.parent.glob(pattern.name)]
    if not ages or min(ages) > settings.heartbeat_ttl_s:
        print(f"unhealthy: no heartbeat from a {model} worker here in {settings.heartbeat_ttl_s}s")
        return 1
    print(f"healthy: last heartbeat {min(ages):.1f}s ago")
    return 0


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def run_models(args: argparse.Namespace) -> int:
    _, body = _http("GET", f"{args.url}/models")
    for model in body["models"]:
        print(
            f"{model['name']:<20} v{model['version']:<6} workers={model['live_workers']:<3} "
            f"queue_depth={model['queue_depth']}"
        )
    return 0


def run_predict(args: argparse.Namespace) -> int:
    status, body = _http(
        "POST", f"{args.url}/predict/{args.model}?wait={args.wait}", args.json.encode()
    )
    print(json.dumps(body, indent=2))
    return 0 if status == 200 and body.get("status") == "succeeded" else 1


COMMANDS = {
    "up": run_up,
    "gateway": run_gateway,
    "worker": run_worker,
    "models": run_models,
    "predict": run_predict,
}

if __name__ == "__main__":
    sys.exit(main())
