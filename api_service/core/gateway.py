"""`Gateway`: the service every front door calls, and `open_gateway`, which builds it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from google.protobuf.message import Message
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api_service.core.batcher import PublishBatcher
from api_service.core.broker import TaskPublisher
from api_service.core.callers import NO_LIMITS as NO_LIMITS
from api_service.core.callers import Caller, owner_of
from api_service.core.callers import KeyLimits as KeyLimits
from api_service.core.codec import decode_request, task_view
from api_service.core.dead_letters import DeadLetterConsumer
from api_service.core.limits import KeyLimiter
from api_service.core.live_models import LiveModel, LiveModels
from api_service.core.model_changes import ModelChanges
from api_service.core.recent import RecentLatency
from api_service.core.records import recorded_at_confirm
from api_service.core.references import References
from api_service.core.submission import TaskSubmitter
from api_service.core.waiter import TaskWaiter
from api_service.metrics import record_key_request
from catalog.db import Catalog
from catalog.files import open_model_files
from inferq.errors import Forbidden, InvalidRequest, TaskNotFound
from inferq.names import Names
from inferq.redis_client import connect_redis, warn_if_not_persistent
from inferq.settings import CatalogSettings, GatewaySettings
from inferq.tasks.state import TaskState, TaskStatus, new_task_id, now_ms
from inferq.tasks.store import TaskStore
from model_registry.registry import Registry

logger = logging.getLogger(__name__)

MAX_WAIT_S = 30
MAX_DEADLINE_S = 86_400
_TASK_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class PredictRequest:
    """One prediction, as a front door hands it over."""

    model: str
    body: bytes  # the model's request message: JSON, or binary protobuf
    content_type: str = "application/json"
    wait_s: float = 0.0  # hold the call up to this long for the task's end
    deadline_s: float | None = None  # None: the default deadline
    idempotency_key: str | None = None
    trace_context: Mapping[str, str] = field(default_factory=dict)  # W3C, to pass on
    caller: Caller | None = None


@dataclass(frozen=True)
class TaskAnswer:
    """A task as the core answers for it: its state once known, and how to read its result."""

    task_id: str
    model: str
    state: TaskState | None  # None: accepted, and no state was read (it is queued)
    response_class: type[Message] | None

    @property
    def finished(self) -> bool:
        return self.state is not None and self.state.status.is_final

    def view(self) -> dict[str, Any]:
        """The task as clients see it: the whole view, or, for a task just accepted, the
        short form a 202 carries."""
        if self.state is None:
            return {
                "task_id": self.task_id,
                "model": self.model,
                "status": TaskStatus.QUEUED.value,
                "location": f"/tasks/{self.task_id}",
            }
        return task_view(self.state, self.response_class, now_ms())


class Gateway:
    """Submits predictions and reads tasks; knows no transport."""

    def __init__(
        self,
        settings: GatewaySettings,
        redis: Redis,
        live_models: LiveModels,
        publisher: TaskPublisher,
        waiter: TaskWaiter,
        submitter: TaskSubmitter,
        store: TaskStore,
        catalog: Catalog,
        references: References,
        changes: ModelChanges,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.live_models = live_models
        self.publisher = publisher
        self.catalog = catalog  # what exists; `live_models`: who serves it now
        self.references = references
        self.changes = changes
        self._waiter = waiter
        self._submitter = submitter
        self._store = store
        self.recent = RecentLatency()  # for GET /stats: what this gateway answered

    async def predict(self, request: PredictRequest) -> TaskAnswer:
        """Validates, publishes with the broker's confirm, and waits up to ``wait_s`` for
        the end: the task's final state, or (still pending) the accepted task."""
        wait_s = _seconds("wait", request.wait_s, 0, MAX_WAIT_S, zero_ok=True)
        wait_s = min(wait_s, self.settings.max_wait_s)
        deadline_s = request.deadline_s
        if deadline_s is not None:
            deadline_s = _seconds("timeout", deadline_s, 0, MAX_DEADLINE_S)
        caller = request.caller
        if caller is not None and not caller.may_use(request.model):
            record_key_request(caller.name, "forbidden")
            raise Forbidden(
                f"the key {caller.name!r} ({caller.key_id}) may not use the model "
                f"{request.model.partition('@')[0]!r} (it may use: "
                f"{', '.join(sorted(caller.models or ()))})"
            )
        served = await self.references.served_name(request.model)
        entry = await self.live_models.require_live(served)
        message = decode_request(request.body, request.content_type, entry.request_class)
        task_id = new_task_id()
        keyed = request.idempotency_key is not None
        # Watched before it is published: its result can come back before the confirm does.
        waiting = self._waiter.watching(task_id) if wait_s else contextlib.nullcontext()
        with waiting as done:
            submitted = await self._submitter.submit(
                entry,
                message,
                deadline_s=deadline_s or self.settings.default_deadline_s,
                idempotency_key=request.idempotency_key,
                trace_context=dict(request.trace_context),
                task_id=task_id,
                record=recorded_at_confirm(waits=bool(wait_s), has_idempotency_key=keyed),
                finished=done,
                caller=caller,
            )
            if not submitted.created:  # the Idempotency-Key named an earlier task
                state = await self._waiter.wait(submitted.task_id, wait_s)
            elif done is not None:
                state = await self._waiter.wait_watched(
                    task_id, done, wait_s, pending=True, unrecorded=submitted.unrecorded
                )
                state = state if state is not None and state.status.is_final else None
            else:
                state = None
        answer = TaskAnswer(submitted.task_id, entry.record.name, state, entry.response_class)
        if state is not None and state.status.is_final:
            self.recent.record(state)  # for GET /stats: only final states count
        return answer

    async def task(
        self, task_id: str, wait_s: float = 0.0, caller: Caller | None = None
    ) -> TaskAnswer:
        """The task's state, after waiting up to ``wait_s`` for it to end. A task belongs to
        the key that sent it: for any other caller it does not exist (404, not 403, so that
        task ids tell nothing of other keys' tasks)."""
        wait_s = _seconds("wait", wait_s, 0, MAX_WAIT_S, zero_ok=True)
        wait_s = min(wait_s, self.settings.max_wait_s)
        if not _TASK_ID.match(task_id):
            raise TaskNotFound(f"no task {task_id!r}", task_id=task_id)
        state = self._waiter.finished(task_id) or await self._store.get(task_id)
        # Another key's task is missing at once: waiting for its end would tell it exists.
        if wait_s and state is not None and state.owner == owner_of(caller):
            if not state.status.is_final:
                state = await self._waiter.wait(task_id, wait_s)
        if state is None or state.status is TaskStatus.REJECTED or state.owner != owner_of(caller):
            raise TaskNotFound(
                f"no task {task_id!r} (never existed, or its result expired)", task_id=task_id
            )
        entry = await self.live_models.get(state.model)
        answer = TaskAnswer(task_id, state.model, state, entry.response_class if entry else None)
        if state.status.is_final:
            self.recent.record(state)
        return answer

    async def readiness(self) -> dict[str, bool]:
        """Whether the broker and Redis are reachable."""
        try:
            redis_ok = bool(await self.redis.ping())
        except (RedisError, OSError):
            redis_ok = False
        return {"broker": self.publisher.is_ready, "redis": redis_ok}

    async def entries(self) -> list[LiveModel]:
        return await self.live_models.all()


@contextlib.asynccontextmanager
async def open_gateway(
    settings: GatewaySettings, catalog_settings: CatalogSettings | None = None
) -> AsyncIterator[Gateway]:
    """Opens the catalog, connects to Redis and the broker and builds the gateway; closes all
    on exit."""
    catalog_settings = catalog_settings or CatalogSettings()
    names = Names(settings.namespace)
    catalog = await asyncio.to_thread(Catalog.open, catalog_settings.catalog_url)
    files = open_model_files(catalog_settings.model_store_url)
    redis = connect_redis(settings.redis_url, sentinel_password=settings.redis_sentinel_password)
    await warn_if_not_persistent(redis)
    store = TaskStore(
        redis,
        names,
        settings.result_ttl_s,
        settings.redis_min_replicas_ack,  # the dead-letter consumer's final writes
        settings.redis_replica_timeout_ms,
    )
    registry = Registry(redis, names, settings.heartbeat_ttl_s, settings.model_record_ttl_s)

    async def on_broker_connect(connection: AbstractRobustConnection) -> None:
        channel = await connection.channel()
        dead_letters = DeadLetterConsumer(channel, names, store, publisher, settings.delivery_limit)
        await dead_letters.start()

    publisher = TaskPublisher(settings.amqp_urls, settings.publish_timeout_s, on_broker_connect)
    await publisher.start()
    waiter = TaskWaiter(redis, names.task_done_channel, store, settings.result_ttl_s)
    waiter.start()
    try:
        live_models = LiveModels(registry, settings.registry_cache_s, settings.heartbeat_ttl_s)
        batcher = PublishBatcher(
            store,
            publisher,
            settings.max_tasks_per_message,
            settings.max_publishes_in_flight,
            is_finished=lambda task_id: waiter.finished(task_id) is not None,  # rule 1
        )
        limiter = KeyLimiter(redis, names)
        submitter = TaskSubmitter(
            redis, names, store, publisher, batcher, settings.result_ttl_s, limiter
        )
        references = References(catalog, live_models, settings.registry_cache_s)
        changes = ModelChanges(
            catalog, files, catalog_settings, names, publisher, live_models, references
        )
        yield Gateway(
            settings,
            redis,
            live_models,
            publisher,
            waiter,
            submitter,
            store,
            catalog,
            references,
            changes,
        )
    finally:
        await waiter.close()
        await publisher.close()
        await redis.aclose()
        catalog.close()


def _seconds(name: str, value: float, low: float, high: float, zero_ok: bool = False) -> float:
    if not (low <= value <= high if zero_ok else low < value <= high):
        bounds = f"[{low:g}, {high:g}]" if zero_ok else f"({low:g}, {high:g}]"
        raise InvalidRequest(f"{name} must be seconds in {bounds}, not {value:g}")
    return value
