"""Builds the gateway application: connections at startup, routes, error handlers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from aio_pika.abc import AbstractRobustConnection
from fastapi import FastAPI

from api_service import metrics
from api_service.batcher import PublishBatcher
from api_service.broker import TaskPublisher
from api_service.catalog import ModelCatalog
from api_service.dead_letters import DeadLetterConsumer
from api_service.errors import install_error_handlers
from api_service.hot_path import HotPath
from api_service.metrics import MetricsMiddleware
from api_service.responses import JSONResponse
from api_service.routes import dashboard, health, models, predict, tasks
from api_service.state import Gateway
from api_service.submission import TaskSubmitter
from api_service.waiter import TaskWaiter
from inferq.names import Names
from inferq.redis_client import connect_redis, warn_if_not_persistent
from inferq.settings import GatewaySettings
from inferq.tasks.store import TaskStore
from model_registry.registry import Registry

logger = logging.getLogger(__name__)


def create_app(settings: GatewaySettings | None = None) -> HotPath:
    """The gateway's ASGI app: the predictions' fast path in front of the FastAPI app."""
    settings = settings or GatewaySettings()
    return HotPath(create_fastapi_app(settings), settings.body_timeout_s)


def create_fastapi_app(settings: GatewaySettings) -> FastAPI:

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        names = Names(settings.namespace)
        redis = connect_redis(settings.redis_url)
        await warn_if_not_persistent(redis)
        store = TaskStore(redis, names, settings.result_ttl_s)
        registry = Registry(redis, names, settings.heartbeat_ttl_s, settings.model_record_ttl_s)

        async def on_broker_connect(connection: AbstractRobustConnection) -> None:
            channel = await connection.channel()
            dead_letters = DeadLetterConsumer(
                channel, names, store, publisher, settings.delivery_limit
            )
            await dead_letters.start()

        publisher = TaskPublisher(
            settings.amqp_connection_url, settings.publish_timeout_s, on_broker_connect
        )
        await publisher.start()
        waiter = TaskWaiter(redis, names.task_done_channel, store, settings.result_ttl_s)
        waiter.start()
        catalog = ModelCatalog(registry, settings.registry_cache_s, settings.heartbeat_ttl_s)
        batcher = PublishBatcher(
            store,
            publisher,
            settings.max_tasks_per_message,
            settings.max_publishes_in_flight,
            is_finished=lambda task_id: waiter.finished(task_id) is not None,
        )
        submitter = TaskSubmitter(redis, names, store, publisher, batcher, settings.result_ttl_s)
        app.state.gateway = Gateway(
            settings, names, redis, store, catalog, publisher, waiter, submitter
        )
        logger.info("gateway ready (namespace %s)", settings.namespace)
        try:
            yield
        finally:
            await waiter.close()
            await publisher.close()
            await redis.aclose()

    app = FastAPI(
        title="inferq gateway",
        version="0.1.0",
        description="Submit predictions to queue-served models and fetch their results.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware)
    for module in (predict, tasks, models, health, metrics, dashboard):
        app.include_router(module.router)
    return app
