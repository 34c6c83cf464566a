"""Builds the gateway's HTTP application: the front door, and behind it a FastAPI app whose
lifespan opens the gateway core."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from api_service import metrics
from api_service.core.auth import KeyAuthenticator
from api_service.core.gateway import open_gateway
from api_service.errors import install_error_handlers
from api_service.front_door import Authenticate, FrontDoor, anyone
from api_service.openapi import openapi_document
from api_service.responses import JSONResponse
from api_service.routes import catalog, dashboard, health, keys, models, v2, ws
from inferq.heap import freeze_startup_heap
from inferq.settings import GatewaySettings

logger = logging.getLogger(__name__)

TITLE = "inferq gateway"


def create_app(
    settings: GatewaySettings | None = None,
    authenticate: Authenticate | None = None,
    *,
    freeze_heap: bool = False,
) -> FrontDoor:
    """The gateway's ASGI app; ``authenticate``: the API keys of the gateway's catalog
    (`api_service.core.auth`) unless another hook is given. ``freeze_heap``: the process
    serves this app and nothing else (`inferq gateway`): once it is ready, what it holds
    leaves the garbage collector's sight (`inferq.heap`)."""
    settings = settings or GatewaySettings()
    if authenticate is None:
        # The catalog opens with the gateway core, in the app's lifespan: looked up per call.
        authenticate = KeyAuthenticator(settings, lambda: app.state.gateway.catalog)
    app = create_fastapi_app(settings, authenticate, freeze_heap)
    return FrontDoor(app, settings, authenticate)


def create_fastapi_app(
    settings: GatewaySettings, authenticate: Authenticate = anyone, freeze_heap: bool = False
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Imported only to serve: its protobuf package `inference` would clash, in a process
        # that builds the app without serving it (a test), with a client's own copy.
        from api_service.grpc.server import serving_grpc

        async with open_gateway(settings) as gateway:
            app.state.gateway = gateway
            async with serving_grpc(gateway, settings, authenticate):  # the gRPC door
                if freeze_heap:
                    freeze_startup_heap()
                logger.info("gateway ready (namespace %s)", settings.namespace)
                yield

    app = FastAPI(
        title=TITLE,
        version="0.1.0",
        description="Submit predictions to queue-served models and fetch their results.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        openapi_url=None,  # served below, with the live models' schemas
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    for module in (models, catalog, keys, health, metrics, dashboard, ws, v2):
        app.include_router(module.router)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(await openapi_document(app, request.app.state.gateway))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{TITLE} - docs")

    return app
