"""API keys over HTTP, for an admin key: create (the token is in the answer, once), list,
show, revoke and rotate. The gateway's authenticator requires the ``admin`` scope for every
path under ``/keys``; these routes only translate to the catalog's calls
(`catalog.db.Catalog.create_key` ...), which check the fields."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from api_service.core.gateway import Gateway
from api_service.core.references import catalog_call
from api_service.responses import JSONResponse
from api_service.state import gateway
from catalog.keys import MAX_LIMIT
from catalog.records import NewKey

router = APIRouter(tags=["keys"])

Admin = Annotated[Gateway, Depends(gateway)]
KeyId = Annotated[
    str,
    Path(pattern="^[0-9a-f]{12}$", description="The key's id: 12 hex characters (iq_<id>_...)"),
]
Limit = Annotated[StrictInt, Field(gt=0, le=MAX_LIMIT)]
#: A secret in an answer is not to be kept by any cache (RFC 6749 5.1 asks as much).
NO_STORE = {"Cache-Control": "no-store"}


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="What the key is for: 1 to 64 letters, digits, '_', '.' or '-'; unique "
        "among the keys not revoked.",
        examples=["batch-jobs"],
    )
    scopes: list[Literal["predict", "read", "admin"]] = Field(
        min_length=1,
        description="predict: send predictions; read: tasks, models, metrics; admin: catalog "
        "changes and keys. None implies another.",
        examples=[["predict", "read"]],
    )
    models: list[str] | None = Field(
        None, description="Model names the key may use (digits allows digits@3); none: all."
    )
    rate: Limit | None = Field(None, description="Requests allowed per `per`; none: no limit.")
    per: Literal["second", "minute"] | None = Field(None, description="The period of `rate`.")
    max_in_flight: Limit | None = Field(
        None, description="Tasks the key may have accepted and not yet ended; none: no limit."
    )


def new_key_json(made: NewKey) -> dict[str, Any]:
    return {**made.key.to_json(), "secret": made.secret}


@router.post(
    "/keys",
    status_code=201,
    summary="Create an API key",
    description="201 with the key and its token in `secret`: the only time the token is "
    "given (the catalog keeps its hash). Send it as `Authorization: Bearer <token>` or "
    "`X-API-Key: <token>`. 409 if a key not revoked has the name; 422 for invalid fields.",
)
async def create_key(body: KeyRequest, gw: Admin) -> JSONResponse:
    made = await catalog_call(
        gw.catalog.create_key,
        body.name,
        body.scopes,
        body.models,
        body.rate,
        body.per,
        body.max_in_flight,
    )
    headers = {"Location": f"/keys/{made.key.key_id}", **NO_STORE}
    return JSONResponse(new_key_json(made), status_code=201, headers=headers)


@router.get("/keys", summary="The API keys (never their secrets)")
async def list_keys(
    gw: Admin,
    include_revoked: Annotated[bool, Query(alias="all", description="Revoked keys too")] = False,
) -> JSONResponse:
    keys = await catalog_call(gw.catalog.list_keys, include_revoked=include_revoked)
    return JSONResponse({"keys": [key.to_json() for key in keys]})


@router.get("/keys/{key_id}", summary="One API key (never its secret)")
async def get_key(key_id: KeyId, gw: Admin) -> JSONResponse:
    return JSONResponse((await catalog_call(gw.catalog.get_key, key_id)).to_json())


@router.delete(
    "/keys/{key_id}",
    summary="Revoke an API key",
    description="200 with the revoked key (revoking it again returns it as it is). Gateways "
    "refuse it within INFERQ_KEY_CACHE_S.",
)
async def revoke_key(key_id: KeyId, gw: Admin) -> JSONResponse:
    return JSONResponse((await catalog_call(gw.catalog.revoke_key, key_id)).to_json())


@router.post(
    "/keys/{key_id}/rotate",
    status_code=201,
    summary="Replace an API key with a new one",
    description="201 with a new key (new id and token in `secret`, the same name, scopes, "
    "models and limits), made as the old one is revoked. 409 for a revoked key.",
)
async def rotate_key(key_id: KeyId, gw: Admin) -> JSONResponse:
    made = await catalog_call(gw.catalog.rotate_key, key_id)
    headers = {"Location": f"/keys/{made.key.key_id}", **NO_STORE}
    return JSONResponse(new_key_json(made), status_code=201, headers=headers)
