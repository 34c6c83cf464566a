"""Dynamic batching in the worker runtime."""

from __future__ import annotations

import asyncio
import re

import aiohttp

from tests.stack import Stack


async def test_requests_are_batched_and_each_gets_its_own_answer(stack: Stack) -> None:
    stack.start_gateway()
    stack.start_worker("tests.models.batch_echo:BatchEcho")
    stack.wait_live("batch_echo")
    inputs = [f"n{i}" for i in range(40)] + ["boom"]

    async def predict(session: aiohttp.ClientSession, data: str) -> dict[str, object]:
        async with session.post(
            "/predict/batch_echo", params={"wait": 20}, json={"data": data}
        ) as r:
            return await r.json()  # type: ignore[no-any-return]

    async with aiohttp.ClientSession(stack.url) as session:
        tasks = await asyncio.gather(*(predict(session, data) for data in inputs))
    by_input = dict(zip(inputs, tasks, strict=True))

    boom = by_input.pop("boom")
    assert boom["status"] == "failed" and boom["error"] == {"type": "ValueError", "message": "boom"}
    sizes = []
    for data, task in by_input.items():
        assert task["status"] == "succeeded", task
        match = re.fullmatch(rf"{data} batch=(\d+)", task["result"]["reply"])  # type: ignore[index]
        assert match, task["result"]
        sizes.append(int(match.group(1)))
    assert max(sizes) <= 8
    assert max(sizes) > 1, "40 concurrent requests never formed a batch"
