"""The commands that talk to a running gateway over its HTTP API: ``models`` (the catalog:
list, show, push, alias, deploy, delete) and ``predict``. They print what the gateway says;
an error answer prints its message and exits 1."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

Answer = tuple[int, Any]


def run_models(args: argparse.Namespace) -> int:
    verb = getattr(args, "verb", None) or "list"
    return int(MODEL_VERBS[verb](args))


def list_models(args: argparse.Namespace) -> int:
    status, body = _http("GET", f"{args.url}/catalog")
    if status != 200:
        return _failed(status, body)
    for model in body["models"]:
        if model["kind"] == "code":
            print(
                f"{model['name']:<24} code  v{model['version']:<4} workers={model['live_workers']}"
            )
            continue
        aliases = " ".join(f"{a}->{n}" for a, n in sorted(model["aliases"].items()))
        print(f"{model['name']:<24} onnx  {len(model['versions'])} version(s)  {aliases}")
        for version in model["versions"]:
            print(
                f"  {version['ref']:<22} replicas={version['replicas']:<3} "
                f"workers={version['live_workers']:<3} {version['size']:>10} B  "
                f"{version['sha256'][:12]}  {', '.join(version['aliases'])}"
            )
    return 0


def show_model(args: argparse.Namespace) -> int:
    name, _, ref = args.ref.partition("@")
    path = f"/models/{_quote(name)}/versions" + (f"/{_quote(ref)}" if ref.isdigit() else "")
    status, body = _http("GET", f"{args.url}{path}")
    if status != 200 or not ref or ref.isdigit():
        return _print(status, body)
    return _print(*_http("GET", f"{args.url}/models/{_quote(args.ref)}"))


def push_model(args: argparse.Namespace) -> int:
    data = Path(args.file).read_bytes()
    query = {k: v for k, v in (("alias", args.alias), ("description", args.description)) if v}
    url = f"{args.url}/models/{_quote(args.name)}/versions?{urllib.parse.urlencode(query)}"
    status, body = _http("POST", url, data, "application/octet-stream")
    if status != 201:
        return _failed(status, body)
    print(f"pushed {body['ref']} ({body['size']} bytes, sha256 {body['sha256'][:12]})")
    for direction in ("inputs", "outputs"):
        for tensor in body["signature"][direction]:
            print(f"  {direction[:-1]:<6} {tensor['name']}: {tensor['dtype']} {tensor['shape']}")
    return 0


def set_alias(args: argparse.Namespace) -> int:
    url = f"{args.url}/models/{_quote(args.name)}/aliases/{_quote(args.alias)}"
    if args.remove:
        return _print(*_http("DELETE", url))
    return _print(*_http("PUT", url, json.dumps({"version": args.version}).encode()))


def deploy_model(args: argparse.Namespace) -> int:
    name, number = _version_ref(args.ref)
    url = f"{args.url}/models/{_quote(name)}/versions/{number}/deployment"
    return _print(*_http("PUT", url, json.dumps({"replicas": args.replicas}).encode()))


def delete_model(args: argparse.Namespace) -> int:
    name, number = _version_ref(args.ref)
    return _print(*_http("DELETE", f"{args.url}/models/{_quote(name)}/versions/{number}"))


MODEL_VERBS = {
    "list": list_models,
    "show": show_model,
    "push": push_model,
    "alias": set_alias,
    "deploy": deploy_model,
    "delete": delete_model,
}


def add_model_verbs(models: argparse.ArgumentParser) -> None:
    # --url after the verb too (`inferq models push f --name n --url U`), not only before it.
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--url", default=argparse.SUPPRESS, help="the gateway's URL")
    verbs = models.add_subparsers(dest="verb", metavar="VERB")
    verbs.add_parser(
        "list", parents=[url], help="every model, its versions, aliases and workers (default)"
    )
    show = verbs.add_parser(
        "show", parents=[url], help="a model's versions, or one (NAME@3, NAME@ALIAS)"
    )
    show.add_argument("ref")
    push = verbs.add_parser(
        "push", parents=[url], help="upload an ONNX file as the model's next version"
    )
    push.add_argument("file")
    push.add_argument("--name", required=True)
    push.add_argument("--alias", help="point this alias at the new version")
    push.add_argument("--description")
    alias = verbs.add_parser(
        "alias", parents=[url], help="set or move NAME@ALIAS to VERSION (or --remove it)"
    )
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version", type=int, nargs="?")
    alias.add_argument("--remove", action="store_true")
    deploy = verbs.add_parser(
        "deploy", parents=[url], help="run N workers for NAME@VERSION (0 undeploys)"
    )
    deploy.add_argument("ref", help="NAME@VERSION")
    deploy.add_argument("--replicas", type=int, default=1)
    delete = verbs.add_parser(
        "delete", parents=[url], help="delete NAME@VERSION (refused while in use)"
    )
    delete.add_argument("ref", help="NAME@VERSION")


def run_predict(args: argparse.Namespace) -> int:
    """Sends one prediction (through `inferq_client`) and waits up to ``--wait`` for its
    result; a model whose worker is still starting (503, just deployed) is asked again until
    then. Prints the task, or the error; exits 0 only if the task succeeded."""
    import httpx  # here: the other commands (the gateway, the workers) need none of it

    from inferq.errors import InferqError
    from inferq_client import Client

    give_up = time.monotonic() + args.wait
    with Client(args.url) as gateway:
        while True:
            try:
                task = gateway.predict(
                    args.model, args.json, wait=max(0.0, give_up - time.monotonic())
                )
                break
            except InferqError as error:
                if error.status_code != 503 or time.monotonic() + 0.5 > give_up:
                    print(json.dumps(error.to_json(), indent=2))
                    return 1
                time.sleep(0.5)
            except httpx.TransportError as error:
                raise SystemExit(
                    f"inferq: cannot reach the gateway at {args.url}: {error}"
                ) from None
    print(json.dumps(task.view, indent=2))
    return 0 if task.succeeded else 1


def _version_ref(ref: str) -> tuple[str, int]:
    name, _, number = ref.partition("@")
    if not (number.isascii() and number.isdigit()):
        raise SystemExit(f"inferq models: {ref!r} is not NAME@VERSION (a number, like digits@3)")
    return name, int(number)


def _print(status: int, body: Any) -> int:
    if status >= 400:
        return _failed(status, body)
    if body is not None:
        print(json.dumps(body, indent=2))
    return 0


def _failed(status: int, body: Any) -> int:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    print(f"error {status}: {error.get('message', body)}", file=sys.stderr)
    return 1


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="@")


def _http(
    method: str, url: str, body: bytes | None = None, content_type: str = "application/json"
) -> Answer:
    headers = {"Content-Type": content_type}
    if key := os.environ.get("INFERQ_API_KEY", "").strip():  # a gateway that requires keys
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, raw.decode(errors="replace")
    except urllib.error.URLError as error:
        raise SystemExit(f"inferq: cannot reach the gateway at {url}: {error.reason}") from None
