"""The task store: each task's state and result, kept in one Redis hash per task.

The gateway creates the record (``queued``) once the broker confirmed the task's message
(unless the task is final by then); the worker moves it to ``running`` and then to a final
state (or straight to a final state, see `workers.base.Model.mark_running`). The moves are
Lua scripts, so they are atomic: a final state is written once, whoever comes second (a
redelivered copy, the dead-letter consumer) finds it final and leaves it. Writing a final
state also announces the task id on a pub/sub channel, which wakes long-polling requests; the
hash stays the source of truth.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from inferq.names import Names
from proto.task_pb2 import TaskEnvelope


class TaskStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    #: Never accepted (the publish failed, the client got a 503): must not run, reads as 404.
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.EXPIRED, TaskStatus.REJECTED}
)
_STATUS_OF = {status.value.encode(): status for status in TaskStatus}
_FINAL_LUA = (
    "status == 'succeeded' or status == 'failed' or status == 'expired' or status == 'rejected'"
)


def new_task_id() -> str:
    """An unguessable task id (128 random bits, URL-safe)."""
    return secrets.token_hex(16)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class TaskState:
    """One task as stored; the gateway turns it into the JSON task view."""

    task_id: str
    model: str
    status: TaskStatus
    created_at_ms: int
    deadline_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    worker_id: str | None
    attempts: int
    result: bytes | None
    error_type: str | None
    error_message: str | None

    @classmethod
    def from_hash(cls, task_id: str, fields: dict[Any, Any]) -> TaskState:
        """From the task hash as Redis returns it (bytes to bytes). Runs once per task the
        gateway hears finish: looked up in place, with no helper calls (half the time)."""
        get = fields.get
        status = _STATUS_OF.get(get(b"status") or b"queued")
        if status is None:
            raise ValueError(f"unknown task status {get(b'status')!r}")
        started, finished = get(b"started_at_ms"), get(b"finished_at_ms")
        worker_id, error_type = get(b"worker_id"), get(b"error_type")
        error_message = get(b"error_message")
        return cls(
            task_id=task_id,
            model=get(b"model", b"").decode(),
            status=status,
            created_at_ms=int(get(b"created_at_ms") or 0),
            deadline_ms=int(get(b"deadline_ms") or 0),
            started_at_ms=int(started) if started else None,
            finished_at_ms=int(finished) if finished else None,
            worker_id=worker_id.decode() if worker_id is not None else None,
            attempts=int(get(b"attempts") or 0),
            result=get(b"result"),
            error_type=error_type.decode() if error_type is not None else None,
            error_message=error_message.decode() if error_message is not None else None,
        )

    def is_past_deadline(self, at_ms: int) -> bool:
        return self.deadline_ms > 0 and at_ms > self.deadline_ms


# KEYS: one task hash per task. ARGV[1] ttl s, then per task: model, created ms, deadline ms.
# The status and the attempts are set only where no worker set them already (the gateway
# creates the record once the broker confirmed the message, so a worker may get there first).
_CREATE = """
for i = 1, #KEYS do
  local at = 2 + (i - 1) * 3
  redis.call('HSETNX', KEYS[i], 'status', 'queued')
  redis.call('HSETNX', KEYS[i], 'attempts', 0)
  redis.call('HSET', KEYS[i], 'model', ARGV[at], 'created_at_ms', ARGV[at + 1],
    'deadline_ms', ARGV[at + 2])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return #KEYS
"""

# KEYS[1] task hash. ARGV: worker id, now ms, ttl s, "1" to leave a running task alone, then
# the task's model, created ms and deadline ms (the gateway writes the same; a worker can get
# there first, as the gateway creates the record after the publish).
# Returns the status before the call; the task is running now unless that was final (or it
# was running and left alone). A task with no record (Redis lost its data) runs and gets one.
_MARK_RUNNING = f"""
local status = redis.call('HGET', KEYS[1], 'status')
if {_FINAL_LUA} or (status == 'running' and ARGV[4] == '1') then
  return status
end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker_id', ARGV[1], 'started_at_ms', ARGV[2],
  'model', ARGV[5], 'created_at_ms', ARGV[6], 'deadline_ms', ARGV[7])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return status or ''
"""

# KEYS[1] done channel, then one task hash per task. ARGV[1] ttl s, then per task: its id
# and its fields, msgpack [field, value, ...] (one argument, not one per field and value:
# Python's Redis client packs each argument, ~1 µs apiece, a tenth of a worker's time).
# Writes each task's final state unless it is final already, and announces the tasks it
# wrote in one message: msgpack [id, [field, value, ...], id, ...], each task's whole hash.
# Returns a 1 (written) or 0 (already final) per task.
_FINISH = f"""
local written, notice = {{}}, {{}}
for i = 2, #KEYS do
  local status = redis.call('HGET', KEYS[i], 'status')
  if {_FINAL_LUA} then
    written[i - 1] = 0
  else
    redis.call('HSET', KEYS[i], unpack(cmsgpack.unpack(ARGV[2 * i - 1])))
    redis.call('EXPIRE', KEYS[i], ARGV[1])
    notice[#notice + 1] = ARGV[2 * i - 2]
    notice[#notice + 1] = redis.call('HGETALL', KEYS[i])
    written[i - 1] = 1
  end
end
if #notice > 0 then
  redis.call('PUBLISH', KEYS[1], cmsgpack.pack(notice))
end
return written
"""


# KEYS[1] task hash. ARGV: ttl s. Returns 1 if the task was still queued and is now rejected;
# 0 if a worker already has it (so the broker had it: the task was accepted after all).
_REJECT = """
local status = redis.call('HGET', KEYS[1], 'status')
if status and status ~= 'queued' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'rejected')
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

_SHA = {
    script: hashlib.sha1(script.encode()).hexdigest()
    for script in (_CREATE, _MARK_RUNNING, _FINISH, _REJECT)
}


@dataclass(frozen=True)
class Outcome:
    """The final state a worker (or the dead-letter consumer) writes for a task."""

    status: TaskStatus
    result: bytes | None = None
    error_type: str | None = None
    error_message: str | None = None
    #: Set when the task ran without being marked running first (on its first delivery,
    #: see `workers.base.Model.mark_running`): when it started; it counts as one attempt.
    unmarked_start_ms: int | None = None

    def started_unmarked(self, at_ms: int) -> Outcome:
        """This outcome of a task that started at ``at_ms`` unmarked. (`dataclasses.replace`
        costs a worker ~3 µs per task.)"""
        return Outcome(self.status, self.result, self.error_type, self.error_message, at_ms)

    def fields(self, worker_id: str, finished_at_ms: int) -> list[str | bytes]:
        pairs: list[str | bytes] = [
            "status",
            self.status.value,
            "finished_at_ms",
            str(finished_at_ms),
        ]
        if self.unmarked_start_ms is not None:
            pairs += ["started_at_ms", str(self.unmarked_start_ms), "attempts", "1"]
        if worker_id:
            pairs += ["worker_id", worker_id]
        if self.result is not None:
            pairs += ["result", self.result]
        if self.error_type is not None:
            pairs += ["error_type", self.error_type, "error_message", self.error_message or ""]
        return pairs


def delivery_limit_exceeded(attempts: int) -> Outcome:
    """What a task that crashed its worker at each of its ``attempts`` starts ends with."""
    return Outcome(
        TaskStatus.FAILED,
        error_type="DeliveryLimitExceeded",
        error_message=f"the task was started {attempts} times and its worker died each "
        "time; its input may be crashing the worker",
    )


#: What a task that reached its deadline before running ends with (worker, dead letters, view).
DEADLINE_EXCEEDED = Outcome(
    TaskStatus.EXPIRED,
    error_type="DeadlineExceeded",
    error_message="the task's deadline passed before a worker could run it",
)


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
        a worker took the task: see ``_CREATE``."""
        keys: list[str] = []
        args: list[Any] = [self._ttl_s]
        for task in tasks:
            keys.append(self._names.task(task.task_id))
            args += [task.model, task.created_at_ms, task.deadline_ms]
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
        task-done message must carry them)."""
        if not outcomes:
            return []
        at = now_ms()
        keys: list[str] = [self._names.task_done_channel]
        args: list[Any] = [self._ttl_s]
        for task_id, outcome in outcomes.items():
            fields = outcome.fields(worker_id, at)
            if tasks and task_id in tasks:
                fields += _envelope_fields(tasks[task_id])
            keys.append(self._names.task(task_id))
            # Redis's Lua msgpack predates the bin type: bytes go as raw strings.
            args += [task_id, msgpack.packb(fields, use_bin_type=False)]
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
    ]


def read_notice(data: bytes) -> list[TaskState]:
    """The final states announced in one task-done message (see ``_FINISH``)."""
    items = msgpack.unpackb(data, raw=True)
    return [
        TaskState.from_hash(task_id.decode(), dict(zip(pairs[::2], pairs[1::2], strict=True)))
        for task_id, pairs in zip(items[::2], items[1::2], strict=True)
    ]
