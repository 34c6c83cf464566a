"""The baseline inferq is measured against: model_b served in-process by a plain FastAPI app,
as a careful FastAPI user would write it (same ONNX session as the worker's; pydantic models,
uvicorn with uvloop and httptools, no access log). Inference runs ``inline`` on the event loop
or in the ``thread`` pool; load_testing/README.md says why ``inline`` is the default.

Run: ``python -m load_testing.bench.baseline --port 8100 [--infer inline|thread]``.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from workers.models.model_b import PIXELS, WEIGHTS, onnx_session

INFER_MODES = ("inline", "thread")
Pixel = Annotated[float, Field(ge=0.0, le=1.0)]


class DigitRequest(BaseModel):
    pixels: list[Pixel] = Field(min_length=PIXELS, max_length=PIXELS)


class DigitResponse(BaseModel):
    label: int
    probabilities: list[float]


def classify(session: ort.InferenceSession, pixels: list[float]) -> DigitResponse:
    batch = np.asarray([pixels], dtype=np.float32)
    labels, probabilities = session.run(["label", "probabilities"], {"pixels": batch})
    return DigitResponse(label=int(labels[0]), probabilities=probabilities[0].tolist())


def create_app(infer: str = "inline") -> FastAPI:
    if infer not in INFER_MODES:
        raise ValueError(f"infer must be one of {INFER_MODES}, not {infer!r}")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.session = onnx_session(WEIGHTS)
        yield

    app = FastAPI(title="model_b baseline", lifespan=lifespan)

    @app.post("/predict/model_b")
    async def predict(body: DigitRequest, request: Request) -> DigitResponse:
        session = request.app.state.session
        if infer == "thread":
            return await run_in_threadpool(classify, session, body.pixels)
        return classify(session, body.pixels)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--infer", choices=INFER_MODES, default="inline")
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(args.infer),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
