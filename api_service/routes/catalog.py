"""The catalog over HTTP: upload a version, list and delete versions, move aliases, set how
many workers the model host runs for a version, and ``GET /catalog`` (everything, for the CLI
and the dashboard). Changes are refused unless ``INFERQ_MODEL_CHANGES`` allows the caller."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.responses import Response
from starlette.types import Message

from api_service.core.gateway import Gateway
from api_service.core.references import catalog_call
from api_service.responses import JSONResponse
from api_service.state import gateway
from catalog.names import MAX_VERSION
from catalog.records import Version, VersionMetadata
from inferq.errors import Forbidden, InvalidRequest, ModelTooLarge, UnsupportedMediaType
from inferq.names import version_key

router = APIRouter(tags=["catalog"])

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
#: What a multipart upload may add to the file: its boundaries, headers and small fields.
MULTIPART_OVERHEAD = 1024 * 1024
#: Content types a raw upload may carry.
RAW_TYPES = ("application/octet-stream", "application/onnx", "application/x-onnx")


async def may_change(request: Request, gw: Annotated[Gateway, Depends(gateway)]) -> Gateway:
    """FastAPI dependency of every change: the gateway, if ``INFERQ_MODEL_CHANGES`` lets
    this caller change models (``loopback``: a client on this machine, or a key with the
    ``admin`` scope, which the authentication required of any change); else 403 saying how
    to allow it."""
    allowed = gw.settings.model_changes
    client = request.client.host if request.client else ""
    caller = getattr(request.state, "caller", None)
    if allowed == "on" or (allowed == "loopback" and (client in LOOPBACK or caller is not None)):
        return gw
    where = "from this machine only" if allowed == "loopback" else "by nobody"
    raise Forbidden(
        f"model changes are allowed {where} (INFERQ_MODEL_CHANGES={allowed}); set it to "
        "'loopback' (clients on 127.0.0.1) or 'on' (anyone: put your own authentication in "
        "front) and restart the gateway"
    )


Changer = Annotated[Gateway, Depends(may_change)]
VersionNumber = Annotated[int, Path(ge=1, le=MAX_VERSION, description="The version's number")]
Reader = Annotated[Gateway, Depends(gateway)]


def version_json(version: Version) -> dict[str, Any]:
    return {
        "model": version.model,
        "version": version.number,
        "ref": version_key(version.model, version.number),
        "sha256": version.sha256,
        "size": version.size,
        "signature": version.signature,
        "metadata": version.metadata.to_json(),
        "created": version.created.isoformat(),
        "state": version.state.value,
        "aliases": list(version.aliases),
        "replicas": version.replicas,
    }


@router.post(
    "/models/{name}/versions",
    status_code=201,
    summary="Upload an ONNX file as the model's next version",
    description="multipart/form-data with a `file` part (and optional `description`, `tags` "
    "(a JSON object of strings), `class_labels` (a JSON list of strings), `alias`), or the "
    "file itself as the body (`Content-Type: application/octet-stream`, the same fields as "
    "query parameters). The file is validated in a separate, limited process before "
    "anything is stored: 413 over INFERQ_MAX_MODEL_BYTES, 422 saying what is wrong.",
)
async def upload_version(name: str, request: Request, gw: Changer) -> JSONResponse:
    limit = gw.changes.max_model_bytes
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        declared = request.headers.get("content-length", "")
        if _is_number(declared) and int(declared) > limit + MULTIPART_OVERHEAD:
            raise _too_large(limit)
        counted = Request(request.scope, _capped(request.receive, limit + MULTIPART_OVERHEAD))
        async with counted.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidRequest("the form has no 'file' part holding the .onnx file")
            data = await upload.read()
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
    elif content_type in RAW_TYPES:
        data = await _read_capped(request, limit)
        fields = dict(request.query_params)
    else:
        raise UnsupportedMediaType(
            f"upload the file as multipart/form-data (a 'file' part) or as the body with "
            f"Content-Type application/octet-stream, not {content_type or 'no content type'!r}"
        )
    if not data:
        raise InvalidRequest("the uploaded file is empty")
    version = await gw.changes.upload(name, data, _metadata(fields), fields.get("alias") or None)
    return JSONResponse(
        version_json(version),
        status_code=201,
        headers={"Location": f"/models/{name}/versions/{version.number}"},
    )


@router.get("/models/{name}/versions", summary="The model's versions")
async def list_versions(name: str, gw: Reader) -> JSONResponse:
    versions = await catalog_call(gw.catalog.list_versions, name)
    return JSONResponse({"model": name, "versions": [version_json(v) for v in versions]})


@router.get("/models/{name}/versions/{number}", summary="One version")
async def get_version(name: str, number: VersionNumber, gw: Reader) -> JSONResponse:
    return JSONResponse(version_json(await catalog_call(gw.catalog.get_version, name, number)))


@router.delete(
    "/models/{name}/versions/{number}",
    summary="Delete a version",
    description="409 while an alias names it, it is deployed, or tasks wait in its queue.",
)
async def delete_version(name: str, number: VersionNumber, gw: Changer) -> JSONResponse:
    return JSONResponse(version_json(await gw.changes.delete_version(name, number)))


class AliasTarget(BaseModel):
    version: int = Field(
        ge=1, le=MAX_VERSION, description="The version the alias names from now on."
    )


@router.put(
    "/models/{name}/aliases/{alias}",
    summary="Set or move an alias",
    description="New predictions for name@alias go to the version (within a second); tasks "
    "already queued for the old one finish there. Moving it back is the rollback.",
)
async def set_alias(name: str, alias: str, target: AliasTarget, gw: Changer) -> JSONResponse:
    moved = await gw.changes.set_alias(name, alias, target.version)
    return JSONResponse({"model": moved.model, "alias": moved.name, "version": moved.version})


@router.delete("/models/{name}/aliases/{alias}", status_code=204, summary="Remove an alias")
async def remove_alias(name: str, alias: str, gw: Changer) -> Response:
    await gw.changes.remove_alias(name, alias)
    return Response(status_code=204)


class DeploymentChange(BaseModel):
    replicas: int = Field(ge=0, description="Workers the model host runs; 0 undeploys.")


@router.put(
    "/models/{name}/versions/{number}/deployment",
    summary="Set how many workers serve a version",
    description="The model host (`inferq host`, part of `inferq up`) starts or stops workers "
    "to match, draining those it stops.",
)
async def set_deployment(
    name: str, number: VersionNumber, change: DeploymentChange, gw: Changer
) -> JSONResponse:
    deployment = await gw.changes.set_replicas(name, number, change.replicas)
    return JSONResponse(
        {"model": deployment.model, "version": deployment.version, "replicas": change.replicas}
    )


@router.get("/catalog", summary="Every model: catalog versions, aliases, deployments, workers")
async def whole_catalog(
    gw: Reader, deleted: Annotated[bool, Query(description="Include deleted versions")] = False
) -> JSONResponse:
    listed: list[dict[str, Any]] = []
    for model in await catalog_call(gw.catalog.list_models):
        versions = await catalog_call(gw.catalog.list_versions, model.name, include_deleted=deleted)
        aliases = await catalog_call(gw.catalog.list_aliases, model.name)
        entries = []
        for version in versions:
            live = await gw.live_models.get(version_key(version.model, version.number), fresh=True)
            entries.append({**version_json(version), "live_workers": _workers(live)})
        listed.append(
            {
                "name": model.name,
                "kind": "onnx",
                "description": model.description,
                "created": model.created.isoformat(),
                "aliases": {alias.name: alias.version for alias in aliases},
                "versions": entries,
            }
        )
    # Models served by code: live in the registry.
    for entry in await gw.live_models.all(fresh=True):
        if "@" not in entry.record.name:
            listed.append(
                {
                    "name": entry.record.name,
                    "kind": "code",
                    "description": entry.record.description,
                    "version": entry.record.version,
                    "live_workers": len(entry.workers),
                }
            )
    return JSONResponse({"models": sorted(listed, key=lambda m: str(m["name"]))})


def _workers(entry: Any) -> int:
    return len(entry.workers) if entry is not None else 0


def _metadata(fields: dict[str, str]) -> VersionMetadata:
    tags = _json_field(fields, "tags", dict, 'a JSON object of strings, like {"team": "ml"}')
    labels = _json_field(fields, "class_labels", list, 'a JSON list of strings, like ["cat"]')
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise InvalidRequest('tags must be a JSON object of strings, like {"team": "ml"}')
    if not all(isinstance(label, str) for label in labels):
        raise InvalidRequest('class_labels must be a JSON list of strings, like ["cat"]')
    return VersionMetadata(fields.get("description", ""), tags, labels)


def _json_field(fields: dict[str, str], name: str, kind: type, form: str) -> Any:
    raw = fields.get(name)
    if not raw:
        return kind()
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be {form}, not {raw[:80]!r}") from None
    if not isinstance(value, kind):
        raise InvalidRequest(f"{name} must be {form}, not {raw[:80]!r}")
    return value


def _too_large(limit: int) -> ModelTooLarge:
    return ModelTooLarge(
        f"the upload exceeds {limit} bytes (INFERQ_MAX_MODEL_BYTES): upload a smaller model "
        "(quantized, or float16 weights), or raise the limit",
        reason="too_large",
    )


def _capped(
    receive: Callable[[], Awaitable[Message]], limit: int
) -> Callable[[], Awaitable[Message]]:
    """``receive``, refusing (413) a body that grows past ``limit`` bytes as it arrives."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _too_large(limit)
        return message

    return capped


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if _is_number(declared) and int(declared) > limit:
        raise _too_large(limit)
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit() alone takes "²"
