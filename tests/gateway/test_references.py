"""`References`, the gateway's resolution of ``name``, ``name@3`` and ``name@alias``: what the
hot path asks of the catalog. Pure logic, so the catalog and the registry are stand-ins that
count their calls (the real ones are exercised by tests/catalog/test_versions_served.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from api_service.core.references import References
from inferq.errors import ModelNotFound


class Catalog:
    """Resolves ``scaler`` and its aliases to ``target``; counts and optionally slows calls."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.target = 1
        self.calls = 0
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def resolve(self, ref: str) -> Any:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay_s)
        if not ref.startswith("scaler"):
            raise ModelNotFound(f"no model named {ref!r}", model=ref)

        class Version:
            model, number = "scaler", self.target

        return Version()


class LiveModels:
    async def get(self, name: str) -> object | None:
        return object() if name == "model_b" else None


def references(catalog: Catalog, cache_s: float = 60.0) -> References:
    return References(catalog, LiveModels(), cache_s)  # type: ignore[arg-type]


def test_requests_arriving_together_share_one_lookup() -> None:
    catalog = Catalog(delay_s=0.05)
    refs = references(catalog)

    async def many() -> list[str]:
        return await asyncio.gather(*(refs.served_name("scaler@production") for _ in range(32)))

    assert asyncio.run(many()) == ["scaler@1"] * 32
    assert catalog.calls == 1


def test_an_answer_past_its_time_is_given_while_one_lookup_refreshes_it() -> None:
    catalog = Catalog()
    refs = references(catalog, cache_s=0.0)  # every answer is past its time at once

    async def scenario() -> tuple[str, str, str]:
        first = await refs.served_name("scaler@production")
        catalog.target = 2  # the alias moved
        stale = await refs.served_name("scaler@production")
        await asyncio.sleep(0.1)  # the background refresh ends
        fresh = await refs.served_name("scaler@production")
        await asyncio.sleep(0.1)
        return first, stale, fresh

    assert asyncio.run(scenario()) == ("scaler@1", "scaler@1", "scaler@2")
    assert catalog.calls == 3


def test_a_refresh_that_fails_drops_the_answer_so_the_next_request_gets_the_error() -> None:
    catalog = Catalog()
    refs = references(catalog, cache_s=0.0)

    async def scenario() -> None:
        assert await refs.served_name("scaler@production") == "scaler@1"

        def deleted(ref: str) -> Any:
            raise ModelNotFound("model 'scaler' has no alias 'production'")

        catalog.resolve = deleted  # type: ignore[method-assign]
        assert await refs.served_name("scaler@production") == "scaler@1"  # stale, refreshing
        await asyncio.sleep(0.1)
        with pytest.raises(ModelNotFound, match="no model 'scaler@production'"):
            await refs.served_name("scaler@production")

    asyncio.run(scenario())


def test_a_live_class_model_keeps_its_bare_name_and_unknown_names_are_not_kept() -> None:
    catalog = Catalog()
    refs = references(catalog)

    async def scenario() -> None:
        assert await refs.served_name("model_b") == "model_b"
        for _ in range(2):
            with pytest.raises(ModelNotFound):
                await refs.served_name("nosuch")

    asyncio.run(scenario())
    assert catalog.calls == 2  # model_b never reached the catalog; nosuch was asked twice
