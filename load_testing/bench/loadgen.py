"""A closed-loop async load generator (aiohttp): N clients, each in a loop of {send a
request, wait for its complete answer, check it}, for a warm-up and then a measured window.
The modes (``baseline``, ``wait``, ``poll``, ``interval``), what counts and what is checked
are in load_testing/README.md ("The load"). It shares the cores of the machine under test, so
it is kept light: one connection per client, bodies encoded once, orjson.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import aiohttp
import numpy as np
import orjson

from load_testing.bench.workloads import AnswerError, Sample, Workload

MODES = ("baseline", "wait", "poll", "interval")
FINAL = frozenset({"succeeded", "failed", "expired"})
JSON_HEADERS = {"Content-Type": "application/json"}
ERROR_PAUSE_S = 0.01  # after a failed exchange, so a refused connection is not a busy loop
P = TypeVar("P")


@dataclass
class LoadResult(Generic[P]):
    mode: str
    clients: int
    window_s: float
    latencies_s: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    http_requests: int = 0  # every HTTP request sent in the window (polls included)
    late: int = 0  # `wait` answers that came back 202 (not done in S) and were long-polled
    probe_start: P | None = None
    probe_end: P | None = None

    @property
    def completed(self) -> int:
        return len(self.latencies_s)

    def summary(self) -> dict[str, Any]:
        lat_ms = np.asarray(self.latencies_s) * 1000 if self.latencies_s else np.zeros(1)
        p50, p90, p99 = np.percentile(lat_ms, [50, 90, 99])
        return {
            "completed": self.completed,
            "throughput_rps": self.completed / self.window_s,
            "p50_ms": float(p50),
            "p90_ms": float(p90),
            "p99_ms": float(p99),
            "mean_ms": float(lat_ms.mean()),
            "max_ms": float(lat_ms.max()),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "http_requests_per_s": self.http_requests / self.window_s,
            "late_202": self.late,
        }


class Client:
    """One exchange of one mode against one server, with its answer checked."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        mode: str,
        workload: Workload,
        wait_s: float,
        interval_s: float,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.session = session
        self.url = url
        self.wait_s = wait_s
        self.interval_s = interval_s
        self.check = workload.check
        self.model = workload.model
        self.requests = 0
        self.late = 0
        predict = f"{url}/predict/{workload.model}"
        self.predict_url = f"{predict}?wait={wait_s:g}" if mode == "wait" else predict
        self.exchange: Callable[[Sample], Awaitable[None]] = getattr(self, f"_{mode}")

    async def _call(self, method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
        self.requests += 1
        async with self.session.request(method, url, data=body, headers=JSON_HEADERS) as answer:
            return answer.status, orjson.loads(await answer.read())

    async def _baseline(self, sample: Sample) -> None:
        status, result = await self._call("POST", self.predict_url, sample.body)
        if status != 200:
            raise AnswerError(f"HTTP {status}")
        self.check(result, sample)

    async def _wait(self, sample: Sample) -> None:
        status, view = await self._call("POST", self.predict_url, sample.body)
        if status == 202:  # not done within wait_s: a client long-polls for the rest
            self.late += 1
            view = await self._long_poll(view["task_id"])
        elif status != 200:
            raise AnswerError(f"HTTP {status}")
        self._check_view(view, sample)

    async def _poll(self, sample: Sample) -> None:
        task_id = await self._submit(sample)
        self._check_view(await self._long_poll(task_id), sample)

    async def _interval(self, sample: Sample) -> None:
        task_id = await self._submit(sample)
        while True:
            await asyncio.sleep(self.interval_s)
            view = await self._get_task(f"{self.url}/tasks/{task_id}")
            if view["status"] in FINAL:
                return self._check_view(view, sample)

    async def _submit(self, sample: Sample) -> str:
        status, accepted = await self._call("POST", self.predict_url, sample.body)
        if status != 202:
            raise AnswerError(f"HTTP {status} (expected 202)")
        return str(accepted["task_id"])

    async def _long_poll(self, task_id: str) -> dict[str, Any]:
        url = f"{self.url}/tasks/{task_id}?wait={self.wait_s:g}"
        while True:
            view = await self._get_task(url)
            if view.get("task_id") != task_id:
                raise AnswerError("the view of another task")
            if view["status"] in FINAL:
                return view

    async def _get_task(self, url: str) -> dict[str, Any]:
        status, view = await self._call("GET", url)
        if status != 200:
            raise AnswerError(f"HTTP {status} on GET /tasks")
        return view  # type: ignore[no-any-return]

    def _check_view(self, view: dict[str, Any], sample: Sample) -> None:
        if view.get("status") != "succeeded":
            raise AnswerError(f"task {view.get('status')}")
        if view.get("model") != self.model or not view.get("created_at"):
            raise AnswerError("an incomplete task view")
        self.check(view.get("result") or {}, sample)


async def run_load(
    url: str,
    mode: str,
    clients: int,
    duration_s: float,
    warmup_s: float,
    workload: Workload,
    *,
    wait_s: float = 10.0,
    interval_s: float = 0.02,
    probe: Callable[[], P] | None = None,
) -> LoadResult[P]:
    """Drive ``url`` with ``clients`` closed-loop clients; ``probe`` (if given) is called at
    the start and the end of the measured window, for the caller's own counters."""
    result: LoadResult[P] = LoadResult(mode, clients, duration_s)
    connector = aiohttp.TCPConnector(limit=clients, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=wait_s + 60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        runners = [Client(session, url, mode, workload, wait_s, interval_s) for _ in range(clients)]
        samples = workload.samples
        start = time.perf_counter()
        window_start, window_end = start + warmup_s, start + warmup_s + duration_s
        stride = max(1, len(samples) // clients)

        async def loop(index: int, client: Client) -> None:
            n = index * stride
            while (t0 := time.perf_counter()) < window_end:
                sample = samples[n % len(samples)]
                n += 1
                try:
                    await client.exchange(sample)
                    error = None
                except AnswerError as answer:
                    error = str(answer)
                except (
                    aiohttp.ClientError,
                    TimeoutError,
                    ValueError,
                    KeyError,
                    TypeError,
                ) as failure:
                    error = type(failure).__name__
                t1 = time.perf_counter()
                if error is not None:
                    result.errors[error] += 1
                    await asyncio.sleep(ERROR_PAUSE_S)
                elif window_start <= t0 and t1 <= window_end:
                    result.latencies_s.append(t1 - t0)

        async def mark_window() -> None:
            await asyncio.sleep(window_start - time.perf_counter())
            requests_before = sum(c.requests for c in runners)
            result.probe_start = probe() if probe else None
            await asyncio.sleep(window_end - time.perf_counter())
            result.probe_end = probe() if probe else None
            result.http_requests = sum(c.requests for c in runners) - requests_before

        await asyncio.gather(mark_window(), *(loop(i, c) for i, c in enumerate(runners)))
        result.late = sum(c.late for c in runners)
    return result
