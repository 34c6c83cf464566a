"""GET /models and /models/{model}: live models, their workers, queues and schemas."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from api_service.core.gateway import Gateway
from api_service.core.live_models import LiveModel
from api_service.responses import JSONResponse
from api_service.routes.catalog import version_json
from api_service.state import gateway
from inferq.errors import ModelNotFound
from model_registry.json_schema import message_json_schema

router = APIRouter()


async def describe(entry: LiveModel, gw: Gateway) -> dict[str, Any]:
    record = entry.record
    stats = await gw.publisher.queue_stats(record.queue)
    return {
        "name": record.name,
        "version": record.version,
        "description": record.description,
        "live": bool(entry.workers),
        "live_workers": len(entry.workers),
        "queue": record.queue,
        "queue_depth": stats.messages if stats else None,
        "consumers": stats.consumers if stats else None,
        "throughput_per_s": round(sum(w.rate_per_s for w in entry.workers), 3),
        "queue_max_length": record.queue_max_length,
        "request_type": record.request_type,
        "response_type": record.response_type,
        "request_schema": message_json_schema(entry.request_class.DESCRIPTOR),
        "response_schema": message_json_schema(entry.response_class.DESCRIPTOR),
        "workers": [
            {
                "worker_id": w.worker_id,
                "host": w.host,
                "pid": w.pid,
                "tasks_done": w.tasks_done,
                "tasks_failed": w.tasks_failed,
                "in_flight": w.in_flight,
                "rate_per_s": w.rate_per_s,
            }
            for w in entry.workers
        ],
    }


@router.get("/models", tags=["models"], summary="Every known model")
async def list_models(gw: Annotated[Gateway, Depends(gateway)]) -> JSONResponse:
    entries = await gw.live_models.all(fresh=True)
    return JSONResponse({"models": [await describe(entry, gw) for entry in entries]})


@router.get(
    "/models/{model}",
    tags=["models"],
    summary="One model",
    description="`model` is a name, `name@3` or `name@alias`. A catalog version that no "
    "worker serves yet answers with its catalog entry and `live: false`.",
)
async def get_model(model: str, gw: Annotated[Gateway, Depends(gateway)]) -> JSONResponse:
    served = await gw.references.served_name(model)
    entry = await gw.live_models.get(served, fresh=True)
    version = None if served == model and entry is not None else await gw.references.version(served)
    described = await describe(entry, gw) if entry is not None else {"name": served, "live": False}
    if version is not None:
        described["catalog"] = version_json(version)
    return JSONResponse(described)


@router.get(
    "/models/{model}/descriptor_set",
    tags=["models"],
    summary="The model's protobuf messages, for protobuf clients",
    description="A serialized `google.protobuf.FileDescriptorSet` defining the request and "
    "response messages (`request_type`, `response_type` in `GET /models/{model}`): a client "
    "builds the classes from it and posts `application/x-protobuf` bodies, for any model, "
    "generic ONNX versions included.",
    response_class=Response,
)
async def get_descriptor_set(model: str, gw: Annotated[Gateway, Depends(gateway)]) -> Response:
    entry = await gw.live_models.get(await gw.references.served_name(model))
    if entry is None:
        raise ModelNotFound(f"no worker has registered {model!r} yet", model=model)
    return Response(entry.record.descriptor_set, media_type="application/x-protobuf")
