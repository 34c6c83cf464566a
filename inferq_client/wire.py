"""What the sync and the async client share: how a call is written on the wire."""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any, Protocol

#: The most one call of the gateway holds for a task's end (its ``?wait=`` limit); a longer
#: wait is several calls.
MAX_WAIT_S = 30.0
#: Predictions `stream` keeps in flight on its socket: at most the gateway's
#: INFERQ_WS_MAX_IN_FLIGHT (64 by default).
STREAM_IN_FLIGHT = 32


class ProtobufMessage(Protocol):
    def SerializeToString(self) -> bytes: ...  # noqa: N802 - protobuf's name


#: A request: the model's request message as JSON (a mapping, or a str of JSON text), as binary
#: protobuf (bytes), or as a protobuf message object.
Body = Mapping[str, Any] | str | bytes | ProtobufMessage


#: Where a client finds its API key when none is given (as the ``inferq`` CLI does).
API_KEY_VARIABLE = "INFERQ_API_KEY"


def request_headers(headers: Mapping[str, str] | None, api_key: str | None) -> dict[str, str]:
    """The headers every call sends: ``headers``, and the API key (``api_key``, else
    ``$INFERQ_API_KEY``) as ``Authorization: Bearer``, unless ``headers`` carry one."""
    out = dict(headers or {})
    key = api_key if api_key is not None else os.environ.get(API_KEY_VARIABLE, "")
    if key and not any(name.lower() == "authorization" for name in out):
        out["Authorization"] = f"Bearer {key.strip()}"
    return out


def encode(body: Body) -> tuple[bytes, str]:
    """The body's bytes and content type."""
    if isinstance(body, bytes):
        return body, "application/x-protobuf"
    if isinstance(body, Mapping):
        return json.dumps(body).encode(), "application/json"
    if isinstance(body, str):
        return body.encode(), "application/json"
    return body.SerializeToString(), "application/x-protobuf"


def predict_path(model: str) -> str:
    return f"/predict/{urllib.parse.quote(model, safe='@')}"


def predict_query(wait_s: float, timeout_s: float | None) -> dict[str, str]:
    query = {"wait": f"{wait_s:g}"} if wait_s > 0 else {}
    if timeout_s is not None:
        query["timeout"] = f"{timeout_s:g}"
    return query


def websocket_url(base_url: str) -> str:
    scheme, rest = base_url.rstrip("/").split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws"


def stream_frame(index: int, model: str, body: Body, timeout_s: float | None) -> str | bytes:
    """The `/ws` frame of the input at ``index``: text for JSON, the binary framing (4-byte
    header length, JSON header, protobuf body) for protobuf."""
    header: dict[str, Any] = {"id": index, "model": model}
    if timeout_s is not None:
        header["timeout"] = timeout_s
    if isinstance(body, str):
        body = json.loads(body)
    if isinstance(body, Mapping):
        return json.dumps({**header, "input": dict(body)})
    data, _ = encode(body)
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(4, "big") + raw + data


def json_or_text(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode(errors="replace")
