"""The garbage collector of a serving process (gateway, worker).

CPython's oldest generation is collected by walking every tracked object the process holds.
A serving process holds a large, permanent heap from its start (modules, protobuf
descriptors, FastAPI's routes, ONNX Runtime's session, the catalog's SQLAlchemy metadata),
so each full collection re-walked it all: in a gateway under load (32 clients, one model_b
worker), one every 2–4 s of 130–280 ms, 5–7 % of a core and a pause on every request in
flight. `freeze_startup_heap`, once the process is ready to serve, moves what exists then to
the collector's permanent generation (`gc.freeze`), which no collection walks; a full
collection then took 11–25 ms (load_testing/README.md)."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then exempt every object alive now from later collections (they stay
    alive: this process keeps them to the end)."""
    gc.collect()
    gc.freeze()
