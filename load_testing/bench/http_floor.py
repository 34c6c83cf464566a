"""The HTTP transport's floor for ``bench doors``, the counterpart of
`load_testing.bench.grpc_floor`: uvicorn with the gateway's own choices (uvloop, httptools, no
access log, no server header) and a bare ASGI app that reads the body and answers a canned
``POST /predict?wait=`` view at once, no queue, no worker. Its CPU per request is what the
HTTP stack costs before inferq does anything; the doors bench drives it with the native
door's clients, so that the two floors say how much of a door's cost is its transport.

``python -m load_testing.bench.http_floor PORT`` serves until it is terminated."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn

#: A model_b answer as the native door writes it (its shape, not its values).
CANNED_VIEW = orjson.dumps(
    {
        "task_id": "0" * 32,
        "model": "model_b",
        "status": "succeeded",
        "result": {"label": 0, "probabilities": [0.1] * 10},
        "location": "/tasks/" + "0" * 32,
    }
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(CANNED_VIEW))]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def canned_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":  # the lifespan: nothing to start
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:  # the whole body, as a door reads it
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": CANNED_VIEW})


if __name__ == "__main__":
    uvicorn.run(
        canned_app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
    )
