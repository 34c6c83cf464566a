"""The commands that run inferq's roles: ``up`` (everything), ``gateway``, ``worker``. Each role
is imported only by the command that runs it, so ``inferq models`` loads no gateway."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from inferq.settings import CatalogSettings, GatewaySettings, WorkerSettings, health_file
from inferq_cli.supervisor import Child, supervise

ENSURE_SERVICES = Path(__file__).resolve().parent.parent / "scripts" / "ensure_services.sh"
#: How a command starts another ``inferq`` process (``inferq up``, ``--replicas``).
INFERQ = [sys.executable, "-m", "inferq_cli"]


def run_up(_: argparse.Namespace) -> int:
    if ENSURE_SERVICES.exists():
        subprocess.run(["bash", str(ENSURE_SERVICES)], check=True)
    # The children write to our pipe, not a terminal: say which format the terminal wants.
    terminal = sys.stdout.isatty() and "INFERQ_LOG_FORMAT" not in os.environ
    env = {"INFERQ_LOG_FORMAT": "text"} if terminal else {}
    # Uploads and deployment changes from this machine only, unless the user chose otherwise.
    gateway_env = {"INFERQ_MODEL_CHANGES": os.environ.get("INFERQ_MODEL_CHANGES", "loopback")}
    return supervise(
        [
            Child("gateway", [*INFERQ, "gateway"], {**env, **gateway_env}),
            Child("model_a", [*INFERQ, "worker", "model_a"], env),
            Child("model_b", [*INFERQ, "worker", "model_b"], env),
            Child("host", [*INFERQ, "host"], env),  # the catalog's deployed versions
        ]
    )


def run_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from api_service.app import create_app
    from api_service.core.auth import open_bind_refusal

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = GatewaySettings(**overrides)
    refusal = open_bind_refusal(settings, CatalogSettings().catalog_url)
    if refusal:
        print(f"inferq gateway: {refusal}", file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(settings, freeze_heap=True),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        # Nothing reads the client's address, which is all X-Forwarded-* would correct.
        proxy_headers=False,
        server_header=False,  # no need to tell every client the server's name
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),  # uvicorn takes an int
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
        me = [*INFERQ, "worker", args.target, "--app-dir", app_dir]
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
    uvloop.run(Worker(model, settings, freeze_heap=True).run())
    return 0


def run_host(_: argparse.Namespace) -> int:
    from inferq_cli.host import run_model_host

    return run_model_host()


def check_worker(settings: WorkerSettings, model: str) -> int:
    """Liveness probe: a worker of ``model`` on this machine heartbeated recently."""
    pattern = Path(health_file(settings, model))
    ages = [time.time() - p.stat().st_mtime for p in pattern.parent.glob(pattern.name)]
    if not ages or min(ages) > settings.heartbeat_ttl_s:
        print(f"unhealthy: no heartbeat from a {model} worker here in {settings.heartbeat_ttl_s}s")
        return 1
    print(f"healthy: last heartbeat {min(ages):.1f}s ago")
    return 0
