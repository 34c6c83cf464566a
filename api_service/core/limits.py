"""Per-key limits, shared by every gateway: requests per second or minute, and tasks in
flight (accepted and not yet ended). Both are checked and charged in one atomic script,
``inferq/tasks/lua/admit.lua``, on Redis's clock; the tasks a gateway is asked to admit in one
turn of its event loop go in one call of it (under load, one Redis round trip for many). The
worker frees an in-flight slot when it writes the task's final state
(`inferq.tasks.store.TaskStore.finish`, for an envelope with ``in_flight_limited``); a slot
whose task never ends frees itself at the task's deadline."""

from __future__ import annotations

import asyncio
import math
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis

from api_service.core.callers import Caller  # not .gateway: it imports this module
from inferq.errors import RateLimited
from inferq.names import Names

_ADMIT = (files("inferq.tasks") / "lua" / "admit.lua").read_text(encoding="utf-8")

#: The longest Retry-After of a key at its in-flight limit (its oldest task may run long).
MAX_IN_FLIGHT_RETRY_S = 60
#: Most tasks admitted in one script call (the rest go in the next).
MAX_ADMITS_PER_CALL = 64

_Admission = tuple[list[str], list[str | int], "asyncio.Future[Any]"]  # keys, args, its answer


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
        self._waiting: list[_Admission] = []  # asked this loop turn, not sent yet
        self._calls: set[asyncio.Task[None]] = set()  # script calls under way

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
        future = asyncio.get_running_loop().create_future()
        if not self._waiting:  # the first this turn: send them all once the turn is over
            asyncio.get_running_loop().call_soon(self._send_waiting)
        self._waiting.append((keys, args, future))
        refused = await future
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

    def _send_waiting(self) -> None:
        while self._waiting:
            batch = self._waiting[:MAX_ADMITS_PER_CALL]
            del self._waiting[:MAX_ADMITS_PER_CALL]
            call = asyncio.ensure_future(self._run(batch))
            self._calls.add(call)  # a reference, so it is not collected mid-way
            call.add_done_callback(self._calls.discard)

    async def _run(self, batch: list[_Admission]) -> None:
        """One script call for ``batch``; each request learns its own answer. A request that
        went away before the call is left out (nothing is charged for it)."""
        batch = [admission for admission in batch if not admission[2].done()]
        if not batch:
            return
        try:
            answers = await self._admit(
                keys=[k for keys, _, _ in batch for k in keys],
                args=[a for _, args, _ in batch for a in args],
            )
        except Exception as error:  # noqa: BLE001 - every waiting request must learn it
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, _, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)

    async def release(self, caller: Caller | None, task_id: str) -> None:
        """Frees the task's in-flight slot: the gateway's part, for a task it admitted but
        could not publish (the worker frees the slots of the tasks it ends)."""
        if caller is not None and caller.limits.max_in_flight is not None:
            await self._redis.zrem(self._names.key_in_flight(caller.key_id), task_id)
