"""Per-key limits against the real Redis, each test in a namespace of its own: the rate
(GCRA, burst = the rate), the tasks in flight, their release by the gateway and by the worker's
final write, two gateways sharing one key; and the per-key request metric."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from api_service import metrics
from api_service.core.gateway import Caller, KeyLimits
from api_service.core.limits import KeyLimiter, in_flight_limited
from inferq.errors import RateLimited
from inferq.names import Names
from inferq.redis_client import connect_redis
from inferq.tasks.outcomes import Outcome
from inferq.tasks.state import TaskStatus, new_task_id, now_ms
from inferq.tasks.store import TaskStore
from proto.task_pb2 import TaskEnvelope

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis() -> AsyncIterator[tuple[Redis, Names]]:
    names = Names(f"test-{os.urandom(4).hex()}")
    client = connect_redis(REDIS_URL)
    yield client, names
    keys = [k async for k in client.scan_iter(match=names.key_pattern)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def key(rate: int | None = None, per_s: float = 1.0, max_in_flight: int | None = None) -> Caller:
    return Caller(
        "reports",
        frozenset({"predict"}),
        key_id=os.urandom(6).hex(),
        limits=KeyLimits(rate, per_s, max_in_flight),
    )


def later(s: float = 60.0) -> int:
    """A task deadline ``s`` from now."""
    return now_ms() + int(s * 1000)


async def admitted(limiter: KeyLimiter, caller: Caller, tasks: int) -> int:
    """How many of ``tasks`` new tasks, sent one after the other, the limiter admits."""
    count = 0
    for _ in range(tasks):
        try:
            await limiter.admit(caller, new_task_id(), later())
            count += 1
        except RateLimited:
            pass
    return count


async def refusal(
    limiter: KeyLimiter, caller: Caller, deadline_ms: int | None = None
) -> RateLimited:
    with pytest.raises(RateLimited) as refused:
        await limiter.admit(caller, new_task_id(), deadline_ms or later())
    return refused.value


async def test_a_burst_of_the_rate_is_admitted_then_refused_until_it_refills(
    redis: tuple[Redis, Names],
) -> None:
    limiter = KeyLimiter(*redis)
    caller = key(rate=5)
    assert await admitted(limiter, caller, 5) == 5
    refused = await refusal(limiter, caller)
    assert refused.details == {"limit": "rate"}
    assert refused.headers["Retry-After"] == "1"  # the wait (200 ms) in whole seconds
    assert "5 requests per second" in refused.message

    await asyncio.sleep(0.25)  # one interval (1/5 s) and a little: one more, not two
    assert await admitted(limiter, caller, 2) == 1


async def test_admissions_asked_together_go_in_one_call_each_as_if_alone(
    redis: tuple[Redis, Names],
) -> None:
    limiter = KeyLimiter(*redis)
    calls: list[list[str]] = []
    script = limiter._admit

    async def counted(keys: list[str], args: list[str | int]) -> object:
        calls.append(keys)
        return await script(keys=keys, args=args)

    limiter._admit = counted  # type: ignore[assignment]
    rated, slotted, free = key(rate=5), key(max_in_flight=2), key(rate=1000)

    answers = await asyncio.gather(
        *(limiter.admit(caller, new_task_id(), later()) for caller in [rated] * 8),
        *(limiter.admit(slotted, new_task_id(), later()) for _ in range(3)),
        limiter.admit(free, new_task_id(), later()),
        return_exceptions=True,
    )

    assert len(calls) == 1  # twelve tasks, three keys: one script call
    refused = [a.details["limit"] if isinstance(a, RateLimited) else None for a in answers]
    assert refused == [None] * 5 + ["rate"] * 3 + [None, None, "in_flight"] + [None]


async def test_a_rate_per_minute(redis: tuple[Redis, Names]) -> None:
    limiter = KeyLimiter(*redis)
    caller = key(rate=20, per_s=60)
    assert await admitted(limiter, caller, 25) == 20
    refused = await refusal(limiter, caller)
    assert refused.headers["Retry-After"] == "3"  # one interval: 60 s / 20
    assert "20 requests per minute" in refused.message
    # The state lasts as long as it matters, no longer: a minute at most.
    client, names = redis
    assert 0 < await client.pttl(names.key_rate(caller.key_id)) <= 60_000


async def test_in_flight_tasks_up_to_the_limit_then_a_release_frees_a_slot(
    redis: tuple[Redis, Names],
) -> None:
    limiter = KeyLimiter(*redis)
    caller = key(max_in_flight=2)
    first, second = new_task_id(), new_task_id()
    await limiter.admit(caller, first, later(30))
    await limiter.admit(caller, second, later(90))
    refused = await refusal(limiter, caller)
    assert refused.details == {"limit": "in_flight"}
    # Until the earliest deadline drops out: 30 s.
    assert refused.headers["Retry-After"] in ("29", "30")

    await limiter.release(caller, first)
    await limiter.admit(caller, new_task_id(), later())
    await refusal(limiter, caller)
    # The set lasts until the latest deadline, when every entry in it has dropped out.
    client, names = redis
    assert 80_000 < await client.pttl(names.key_in_flight(caller.key_id)) <= 90_000


async def test_in_flight_retry_after_is_at_most_a_minute(redis: tuple[Redis, Names]) -> None:
    limiter = KeyLimiter(*redis)
    caller = key(max_in_flight=1)
    await limiter.admit(caller, new_task_id(), later(600))
    assert (await refusal(limiter, caller)).headers["Retry-After"] == "60"


async def test_a_task_past_its_deadline_frees_its_slot(redis: tuple[Redis, Names]) -> None:
    """A task whose end is never reported (its removal lost) holds its slot until its
    deadline, no longer."""
    limiter = KeyLimiter(*redis)
    caller = key(max_in_flight=1)
    await limiter.admit(caller, new_task_id(), later(0.2))
    await refusal(limiter, caller)
    await asyncio.sleep(0.3)
    await limiter.admit(caller, new_task_id(), later())


async def test_a_task_one_limit_refuses_costs_the_other_nothing(
    redis: tuple[Redis, Names],
) -> None:
    limiter = KeyLimiter(*redis)
    client, names = redis
    # Refused for its tasks in flight: the rate is not charged.
    caller = key(rate=2, per_s=60, max_in_flight=1)
    first = new_task_id()
    await limiter.admit(caller, first, later())
    for _ in range(3):
        assert (await refusal(limiter, caller)).details == {"limit": "in_flight"}
    await limiter.release(caller, first)
    await limiter.admit(caller, new_task_id(), later())  # the rate's second of two
    # Refused for the rate: no slot is taken.
    caller = key(rate=1, per_s=60, max_in_flight=5)
    await limiter.admit(caller, new_task_id(), later())
    refused_task = new_task_id()
    with pytest.raises(RateLimited):
        await limiter.admit(caller, refused_task, later())
    assert await client.zcard(names.key_in_flight(caller.key_id)) == 1
    assert await client.zscore(names.key_in_flight(caller.key_id), refused_task) is None


async def test_anonymous_callers_and_keys_without_limits_cost_no_redis_call() -> None:
    unreachable = Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    limiter = KeyLimiter(unreachable, Names("test-unreachable"))
    for caller in (None, key(), key(rate=None, max_in_flight=None)):
        await limiter.admit(caller, new_task_id(), later())
        await limiter.release(caller, new_task_id())
    # A key with a rate but no in-flight limit holds no slot, so a release has nothing to do.
    await limiter.release(key(rate=10), new_task_id())
    assert not in_flight_limited(key(rate=10)) and not in_flight_limited(None)
    assert in_flight_limited(key(max_in_flight=3))
    with pytest.raises(RedisConnectionError):  # the client does fail when it is used
        await limiter.admit(key(rate=10), new_task_id(), later())
    await unreachable.aclose()


async def test_two_gateways_share_a_key_s_rate(redis: tuple[Redis, Names]) -> None:
    """Two gateways (two limiters, each on a Redis connection of its own) hammering one key
    at once admit what one would: the burst, then the rate."""
    _, names = redis
    caller = key(rate=200)
    gateways = [connect_redis(REDIS_URL) for _ in range(2)]
    limiters = [KeyLimiter(client, names) for client in gateways]
    seconds = 2.0
    started = time.monotonic()

    async def hammer(limiter: KeyLimiter) -> int:
        count = 0
        while time.monotonic() - started < seconds:
            try:
                await limiter.admit(caller, new_task_id(), later())
                count += 1
            except RateLimited:
                await asyncio.sleep(0.001)
        return count

    counts = await asyncio.gather(*(hammer(limiter) for limiter in limiters for _ in range(4)))
    elapsed = time.monotonic() - started
    for client in gateways:
        await client.aclose()
    expected = 200 * elapsed + 200  # the rate over the time, and the burst at the start
    assert all(counts[:4]) and all(counts[4:])  # both gateways were admitted some
    assert abs(sum(counts) - expected) <= 0.05 * expected, (sum(counts), expected)


async def test_the_worker_frees_the_slot_with_the_final_state(
    redis: tuple[Redis, Names],
) -> None:
    """A task whose envelope says it holds a slot frees it in the call that writes its final
    state; the dead-letter consumer's and a redelivered copy's calls free it as well."""
    client, names = redis
    limiter = KeyLimiter(client, names)
    store = TaskStore(client, names, ttl_s=60)
    caller = key(max_in_flight=2)
    limited, other = new_task_id(), new_task_id()
    for task_id in (limited, other):
        await limiter.admit(caller, task_id, later())
    await refusal(limiter, caller)

    envelopes = {
        limited: TaskEnvelope(
            task_id=limited, model="m", caller_key_id=caller.key_id, in_flight_limited=True
        ),
        # Not flagged (the gateway did not limit it): its entry is left alone.
        other: TaskEnvelope(task_id=other, model="m", caller_key_id=caller.key_id),
    }
    done = Outcome(TaskStatus.SUCCEEDED, result=b"")
    assert await store.finish({limited: done, other: done}, "w1", envelopes) == [True, True]
    in_flight = names.key_in_flight(caller.key_id)
    assert await client.zrange(in_flight, 0, -1) == [other.encode()]
    state = await store.get(limited)
    assert state is not None and state.status is TaskStatus.SUCCEEDED
    await limiter.admit(caller, new_task_id(), later())

    # A copy finishing a task already final frees its slot too (it must not be held).
    await client.zadd(in_flight, {limited: later()})
    assert await store.finish({limited: done}, "w2", envelopes) == [False]
    assert await client.zscore(in_flight, limited) is None


def sample(key_name: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "inferq_key_requests_total", {"key": key_name, "outcome": outcome}
    )
    return value or 0.0


def test_key_requests_are_counted_by_name_up_to_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_key_labels", set())  # this process's names so far: none
    prefix = f"test-{os.urandom(4).hex()}"
    other_before = sample("other", "rate_limited")
    metrics.record_key_request(f"{prefix}-0", "admitted")
    metrics.record_key_request(f"{prefix}-0", "admitted")
    assert sample(f"{prefix}-0", "admitted") == 2

    for i in range(metrics.MAX_KEY_LABELS + 20):
        metrics.record_key_request(f"{prefix}-{i}", "rate_limited")
    # The first hundred names are labels, the twenty after count as "other".
    assert sample(f"{prefix}-{metrics.MAX_KEY_LABELS - 1}", "rate_limited") == 1
    assert sample(f"{prefix}-{metrics.MAX_KEY_LABELS}", "rate_limited") == 0
    assert sample("other", "rate_limited") - other_before == 20
    metrics.record_key_request(f"{prefix}-0", "forbidden")  # a name already labelled stays
    assert sample(f"{prefix}-0", "forbidden") == 1
    with pytest.raises(ValueError):
        metrics.record_key_request(f"{prefix}-0", "teapot")
