"""The task store: reads and moves the task records, one Redis hash per task.

The gateway creates the record (``queued``) once the broker confirmed the task's message
(unless the task is final by then); the worker moves it to ``running`` and then to a final
state (or straight to a final state, see `workers.base.Model.mark_running`). The moves are
the Lua scripts in ``lua/``, so they are atomic: a final state is written once, whoever comes
second (a redelivered copy, the dead-letter consumer) finds it final and leaves it. Writing a
final state also announces the task id on a pub/sub channel, which wakes long-polling
requests; the hash stays the source of truth.

A failover of a replicated Redis loses the writes the old primary acknowledged but had not
yet sent to the replica that takes over. A store made with ``replicas`` (the setting
``INFERQ_REDIS_MIN_REPLICAS_ACK``) follows each final write with a Redis ``WAIT`` for that
many replicas, in the same round trip, and raises `NotReplicated` when fewer acknowledged in
time: its caller then does not ack the task's message, and writes again (the final state is
written once: a second write of it changes nothing, and the next ``WAIT`` covers the first).
The other writes do not wait. A lost ``queued`` record (the gateway's `create`) loses no
task: the broker holds the message, and the worker that takes it writes the record's fields
again with its ``running`` or final state; until then a poll may answer 404. Waiting there
would add a replica's round trip to every request for that window alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

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


class NotReplicated(RedisError):
    """Fewer replicas than asked acknowledged a final write in time (Redis ``WAIT``)."""


class TaskStore:
    """Reads and moves task records. Every key it writes gets the result TTL. ``replicas``:
    final writes wait for that many replicas (see the module's docstring)."""

    def __init__(
        self,
        redis: Redis,
        names: Names,
        ttl_s: int,
        replicas: int = 0,
        replica_timeout_ms: int = 1000,
    ) -> None:
        self._redis = redis
        self._names = names
        self._ttl_s = ttl_s
        self._replicas = replicas
        self._replica_timeout_ms = replica_timeout_ms

    async def _run_scripts(
        self, calls: list[tuple[str, list[str], list[Any]]], replicated: bool = False
    ) -> list[Any]:
        """Runs (script, keys, args) calls in one round trip, by EVALSHA. (redis-py's own
        pipelined scripts cost a SCRIPT EXISTS round trip each time.) A Redis restart
        forgets scripts: then load them and run again. ``replicated``: then wait for the
        store's replicas, in the same round trip."""
        try:
            return await self._send_scripts(calls, replicated)
        except NoScriptError:
            for script in _SHA:
                await self._redis.script_load(script)
            return await self._send_scripts(calls, replicated)

    async def _send_scripts(
        self, calls: list[tuple[str, list[str], list[Any]]], replicated: bool = False
    ) -> list[Any]:
        wait = replicated and self._replicas > 0
        if len(calls) == 1 and not wait:  # one call needs no pipeline, which has a cost
            script, keys, args = calls[0]
            return [await self._redis.evalsha(_SHA[script], len(keys), *keys, *args)]  # type: ignore[misc]
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                pipe.evalsha(_SHA[script], len(keys), *keys, *args)
            if wait:
                # WAIT covers the writes of its own connection (a pipeline's): the mark, a
                # write every time, makes it cover all before it, a final state an earlier
                # call wrote on another connection included.
                pipe.set(self._names.replication_mark, now_ms(), px=self._ttl_s * 1000)
                pipe.execute_command("WAIT", self._replicas, self._replica_timeout_ms)
            replies = await pipe.execute()
        if wait:
            acknowledged = int(replies[-1])
            if acknowledged < self._replicas:
                raise NotReplicated(
                    f"{acknowledged} of {self._replicas} replica(s) acknowledged the final "
                    f"write in {self._replica_timeout_ms} ms (INFERQ_REDIS_MIN_REPLICAS_ACK)"
                )
            replies = replies[: len(calls)]
        return replies  # type: ignore[no-any-return]

    async def wait_replicated(self) -> None:
        """Waits until the store's replicas have every write made so far, a final state
        another call wrote included; raises `NotReplicated` if they do not in time. No round
        trip when the store waits for none."""
        if self._replicas:
            await self._run_scripts([], replicated=True)

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
        slot of its API key's in-flight limit (``lua/admit.lua``) in the same call. Raises
        `NotReplicated` when the store waits for replicas and fewer had it in time."""
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
        [replies] = await self._run_scripts([(_FINISH, keys, args)], replicated=True)
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
