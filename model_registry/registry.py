"""The heartbeat registry, kept in Redis.

A worker registers its model's record and then renews a heartbeat key that expires after a
few missed intervals; a model is live while one of its workers' heartbeat keys exists. A
worker that dies stops renewing and drops out by itself; one that exits cleanly deletes its
key at once. The model's record outlives its workers (for ``model_record_ttl_s``), so a model
whose workers are all gone answers "unavailable" rather than "unknown".
"""

from __future__ import annotations

from redis.asyncio import Redis

from inferq.names import Names
from model_registry.record import ModelRecord, WorkerHeartbeat


class Registry:
    """Reads and writes the registry of one namespace."""

    def __init__(
        self, redis: Redis, names: Names, heartbeat_ttl_s: float, model_record_ttl_s: int
    ) -> None:
        self._redis = redis
        self._names = names
        self._heartbeat_ttl_ms = int(heartbeat_ttl_s * 1000)
        self._record_ttl_s = model_record_ttl_s

    # --- the worker's side ---------------------------------------------------------------
    async def register(self, record: ModelRecord, heartbeat: WorkerHeartbeat) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._names.model(record.name), record.to_json(), ex=self._record_ttl_s)
            pipe.sadd(self._names.models, record.name)
            pipe.expire(self._names.models, self._record_ttl_s)
            await pipe.execute()
        await self.beat(heartbeat)

    async def beat(self, heartbeat: WorkerHeartbeat) -> bool:
        """Renew the worker's heartbeat, and keep its model's keys from expiring. False if
        the model's record is gone (a Redis that came back empty): register again."""
        model = heartbeat.model
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(
                self._names.heartbeat(model, heartbeat.worker_id),
                heartbeat.to_json(),
                px=self._heartbeat_ttl_ms,
            )
            pipe.sadd(self._names.workers(model), heartbeat.worker_id)
            pipe.expire(self._names.workers(model), self._record_ttl_s)
            pipe.expire(self._names.model(model), self._record_ttl_s)
            pipe.expire(self._names.models, self._record_ttl_s)
            replies = await pipe.execute()
        record_renewed = replies[3]
        return bool(record_renewed)

    async def deregister(self, model: str, worker_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._names.heartbeat(model, worker_id))
            pipe.srem(self._names.workers(model), worker_id)
            await pipe.execute()

    # --- the gateway's side --------------------------------------------------------------
    async def model_names(self) -> list[str]:
        names = await self._redis.smembers(self._names.models)  # type: ignore[misc]
        return sorted(_text(name) for name in names)

    async def get(self, model: str) -> ModelRecord | None:
        raw = await self._redis.get(self._names.model(model))
        return ModelRecord.from_json(raw) if raw else None

    async def live_workers(self, model: str) -> list[WorkerHeartbeat]:
        """The workers whose heartbeat has not expired; forgets the others."""
        ids = sorted(await self._redis.smembers(self._names.workers(model)))  # type: ignore[misc]
        if not ids:
            return []
        beats = await self._redis.mget(
            [self._names.heartbeat(model, _text(worker_id)) for worker_id in ids]
        )
        dead = [worker_id for worker_id, beat in zip(ids, beats, strict=True) if beat is None]
        if dead:
            await self._redis.srem(self._names.workers(model), *dead)  # type: ignore[misc]
        return [WorkerHeartbeat.from_json(beat) for beat in beats if beat is not None]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
