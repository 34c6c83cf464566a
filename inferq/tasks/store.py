"""The task store: reads and moves the task records, one Redis hash per task.

The gateway creates the record (``queued``) once the broker confirmed the task's message
(unless the task is final by then); the worker moves it to ``running`` and then to a final
state (or straight to a final state, see `workers.base.Model.mark_running`). The moves are
the Lua scripts in ``lua/``, so they are atomic: a final state is written once, whoever comes
second (a redelivered copy, the dead-letter consumer) finds it final and leaves it. Writing a
final state also announces the task id on a pub/sub channel, which wakes long-polling
requests; the hash stays the source of truth.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from inferq.names import Names
from inferq.tasks.outcomes import Outcome
from inferq.tasks.state import TaskState, TaskStatus, now_ms
from proto.task_pb2 import TaskEnvelope


def _script(name: str) -> str:
    return (files("inferq.tasks") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


# Read once, at import; each script's header says its KEYS, ARGV and reply.
_CREATE = _script("create")
_MARK_RUNNING = _script("mark_running")
_FINISH = _script("finish")
_REJECT = _script("reject")
_SHA = {
    script: hashlib.sha1(script.encode()).hexdigest()
    for script in (_CREATE, _MARK_RUNNING, _FINISH, _REJECT)
}


class TaskStore:
    """Reads and moves task records. Every key it writes gets the result TTL."""

    def __init__(self, redis: Redis, names: Names, ttl_s: int) -> None:
        self._redis = redis
        self._names = names
        self._ttl_s = ttl_s

    async def _run_scripts(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Runs (script, keys, args) calls in one round trip, by EVALSHA. (redis-py's own
        pipelined scripts cost a SCRIPT EXISTS round trip each time.) A Redis restart
        forgets scripts: then load them and run again."""
        try:
            return await self._send_scripts(calls)
        except NoScriptError:
            for script in _SHA:
                await self._redis.script_load(script)
            return await self._send_scripts(calls)

    async def _send_scripts(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        if len(calls) == 1:  # one call needs no pipeline, which has a cost of its own
            script, keys, args = calls[0]
            return [await self._redis.evalsha(_SHA[script], len(keys), *keys, *args)]  # type: ignore[misc]
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                pipe.evalsha(_SHA[script], len(keys), *keys, *args)
            return await pipe.execute()  # type: ignore[no-any-return]

    async def create(self, tasks: list[TaskEnvelope]) -> None:
        """Records tasks as queued, in one round trip. The gateway may create a record after
        a worker took the task: see ``lua/create.lua``."""
        keys: list[str] = []
        args: list[Any] = [self._ttl_s]
        for task in tasks:
            keys.append(self._names.task(task.task_id))
            args += [task.model, task.created_at_ms, task.deadline_ms, task.caller_key_id]
        await self._run_scripts([(_CREATE, keys, args)])

    async def reject(self, task_id: str) -> bool:
        """Marks a task whose publish failed as never accepted, so that a copy that reached
        the queue anyway is not run. False: a worker already took it (it was accepted)."""
        [rejected] = await self._run_scripts(
            [(_REJECT, [self._names.task(task_id)], [self._ttl_s])]
        )
        return bool(rejected)

    async def get(self, task_id: str) -> TaskState | None:
        fields = await self._redis.hgetall(self._names.task(task_id))  # type: ignore[misc]
        return TaskState.from_hash(task_id, fields) if fields else None

    async def mark_running(
        self, tasks: list[TaskEnvelope], worker_id: str, leave_running: bool = False
    ) -> list[TaskStatus | None]:
        """Move tasks to ``running``; returns each one's previous status (None: no record).
        With ``leave_running``, a task already running (its worker died) is not touched."""
        at = now_ms()
        leave = "1" if leave_running else "0"
        replies = await self._run_scripts(
            [
                (
                    _MARK_RUNNING,
                    [self._names.task(t.task_id)],
                    [worker_id, at, self._ttl_s, leave, *_envelope_fields(t)[1::2]],
                )
                for t in tasks
            ]
        )
        return [TaskStatus(r.decode()) if r else None for r in replies]

    async def finish(
        self,
        outcomes: dict[str, Outcome],
        worker_id: str,
        tasks: Mapping[str, TaskEnvelope] | None = None,
    ) -> list[bool]:
        """Write final states; returns, per task, whether this call was the one that wrote it.
        ``tasks``: the envelopes, whose model and times are written too (the same values the
        gateway writes; a worker can finish a task before the gateway's write lands, and the
        task-done message must carry them), and whose ``in_flight_limited`` frees the task's
        slot of its API key's in-flight limit (``lua/admit.lua``) in the same call."""
        if not outcomes:
            return []
        at = now_ms()
        keys: list[str] = [self._names.task_done_channel]
        args: list[Any] = [self._ttl_s]
        slot_keys: list[str] = []  # the in-flight sets of the tasks that hold a slot
        slot_ids: list[str] = []
        for task_id, outcome in outcomes.items():
            fields = outcome.fields(worker_id, at)
            if tasks and task_id in tasks:
                task = tasks[task_id]
                fields += _envelope_fields(task)
                if task.in_flight_limited:
                    slot_keys.append(self._names.key_in_flight(task.caller_key_id))
                    slot_ids.append(task_id)
            keys.append(self._names.task(task_id))
            # Redis's Lua msgpack predates the bin type: bytes go as raw strings.
            args += [task_id, msgpack.packb(fields, use_bin_type=False)]
        keys += slot_keys
        args += slot_ids
        [replies] = await self._run_scripts([(_FINISH, keys, args)])
        return [bool(r) for r in replies]


def _envelope_fields(task: TaskEnvelope) -> list[str | bytes]:
    return [
        "model",
        task.model,
        "created_at_ms",
        str(task.created_at_ms),
        "deadline_ms",
        str(task.deadline_ms),
        "owner",
        task.caller_key_id,
    ]


def read_notice(data: bytes) -> list[TaskState]:
    """The final states announced in one task-done message (see ``lua/finish.lua``)."""
    items = msgpack.unpackb(data, raw=True)
    return [
        TaskState.from_hash(task_id.decode(), dict(zip(pairs[::2], pairs[1::2], strict=True)))
        for task_id, pairs in zip(items[::2], items[1::2], strict=True)
    ]
