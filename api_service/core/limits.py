"""Per-key limits, shared by every gateway: requests per second or minute, and tasks in
flight (accepted and not yet ended). Both are checked and charged in one atomic script,
``inferq/tasks/lua/admit.lua``, on Redis's clock. The worker frees an in-flight slot when it
writes the task's final state (`inferq.tasks.store.TaskStore.finish`, for an envelope with
``in_flight_limited``); a slot whose task never ends frees itself at the task's deadline."""

from __future__ import annotations

import math
from importlib.resources import files

from redis.asyncio import Redis

from api_service.core.callers import Caller  # not .gateway: it imports this module
from inferq.errors import RateLimited
from inferq.names import Names

_ADMIT = (files("inferq.tasks") / "lua" / "admit.lua").read_text(encoding="utf-8")

#: The longest Retry-After of a key at its in-flight limit (its oldest task may run long).
MAX_IN_FLIGHT_RETRY_S = 60


def in_flight_limited(caller: Caller | None) -> bool:
    """Whether the caller's tasks hold in-flight slots: the task envelope's
    ``in_flight_limited``, which tells the worker to free the slot."""
    return caller is not None and caller.limits.max_in_flight is not None


class KeyLimiter:
    """Admits a caller's tasks under its key's limits. An anonymous caller, or a key without
    limits, costs no Redis call."""

    def __init__(self, redis: Redis, names: Names) -> None:
        self._redis = redis
        self._names = names
        # redis-py's script object runs EVALSHA, loading the script again after a restart.
        self._admit = redis.register_script(_ADMIT)

    async def admit(self, caller: Caller | None, task_id: str, deadline_ms: int) -> None:
        """Charges the task to the caller's limits, or raises `RateLimited` (charging
        neither limit). ``deadline_ms``: the task's deadline (wall clock, ms), past which its
        in-flight slot frees itself."""
        if caller is None or not caller.limits.any:
            return
        limits = caller.limits
        keys = [self._names.key_rate(caller.key_id), self._names.key_in_flight(caller.key_id)]
        args: list[str | int] = [
            limits.rate or 0,
            round(limits.per_s * 1000),
            limits.max_in_flight or 0,
            task_id,
            deadline_ms,
        ]
        refused = await self._admit(keys=keys, args=args)
        if refused is None:
            return
        limit, wait_ms = refused[0].decode(), int(refused[1])
        if limit == "rate":
            per = "second" if limits.per_s == 1 else "minute"
            raise RateLimited(
                f"API key {caller.name!r} is over its rate of {limits.rate} requests per {per}",
                retry_after_s=max(1, math.ceil(wait_ms / 1000)),
                limit="rate",
            )
        raise RateLimited(
            f"API key {caller.name!r} has {limits.max_in_flight} tasks in flight, its limit: "
            "retry once one has ended",
            retry_after_s=min(max(1, math.ceil(wait_ms / 1000)), MAX_IN_FLIGHT_RETRY_S),
            limit="in_flight",
        )

    async def release(self, caller: Caller | None, task_id: str) -> None:
        """Frees the task's in-flight slot: the gateway's part, for a task it admitted but
        could not publish (the worker frees the slots of the tasks it ends)."""
        if caller is not None and caller.limits.max_in_flight is not None:
            await self._redis.zrem(self._names.key_in_flight(caller.key_id), task_id)
