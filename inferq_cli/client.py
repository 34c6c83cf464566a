"""The commands that talk to a running gateway over its HTTP API: ``models``, ``predict``."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request


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


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
