"""The ``inferq`` command: run the gateway, workers or the whole stack; query a gateway."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from inferq.tracing import setup_tracing
from inferq_cli import client, keys, roles
from inferq_cli.logs import configure_logging

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": roles.run_up,
    "gateway": roles.run_gateway,
    "worker": roles.run_worker,
    "host": roles.run_host,
    "models": client.run_models,
    "predict": client.run_predict,
    "keys": keys.run_keys,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging()
    if args.command in ("gateway", "worker", "host"):
        setup_tracing(f"inferq-{args.command}")
    return int(COMMANDS[args.command](args) or 0)


def parser() -> argparse.ArgumentParser:
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

    commands.add_parser(
        "host", help="run the workers of the catalog's deployed versions (`inferq up` runs it)"
    )

    for name, text in (
        ("models", "the catalog: list, show, push, alias, deploy, delete"),
        ("predict", "send one prediction"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument(
            "--url", default=os.environ.get("INFERQ_GATEWAY_URL", "http://127.0.0.1:8000")
        )
        if name == "models":
            client.add_model_verbs(sub)
        if name == "predict":
            sub.add_argument("model")
            sub.add_argument("json", help="the request message as JSON")
            sub.add_argument(
                "--wait", type=float, default=10.0, help="seconds to wait for the result"
            )
    keys.add_key_verbs(
        commands.add_parser(
            "keys", help="API keys: create, list, revoke, rotate (in the catalog, directly)"
        )
    )
    return parser
