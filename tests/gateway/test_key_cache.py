"""How often the authentication hook asks the catalog whether any key exists (pure logic: a
catalog that counts its queries stands in for the database; the real one is driven by
test_auth_doors.py): once per cache period, however many calls arrive while it asks."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import cast

import pytest

from api_service.core.auth import KeyAuthenticator
from catalog.db import Catalog
from inferq.errors import Unauthenticated
from inferq.settings import GatewaySettings

LOOPBACK = {"type": "http", "method": "POST", "path": "/predict/m", "client": ("127.0.0.1", 5)}
ELSEWHERE = {**LOOPBACK, "client": ("192.0.2.7", 5)}


class CountingCatalog:
    """Answers `has_active_keys` slowly enough for calls to pile up, and counts."""

    def __init__(self, exists: bool) -> None:
        self.exists = exists
        self.queries = 0
        self._lock = threading.Lock()

    def has_active_keys(self) -> bool:
        with self._lock:
            self.queries += 1
        time.sleep(0.05)
        return self.exists


async def test_calls_arriving_together_share_one_query() -> None:
    catalog = CountingCatalog(exists=False)
    authenticate = KeyAuthenticator(
        GatewaySettings(key_cache_s=0.2), lambda: cast(Catalog, catalog)
    )

    callers = await asyncio.gather(*(authenticate(LOOPBACK, {}) for _ in range(50)))

    assert callers == [None] * 50  # no key exists: this machine may call
    assert catalog.queries == 1
    await asyncio.gather(*(authenticate(LOOPBACK, {}) for _ in range(50)))
    assert catalog.queries == 1  # within the cache period: no query

    await asyncio.sleep(0.25)
    catalog.exists = True  # a key was created meanwhile
    results = await asyncio.gather(
        *(authenticate(LOOPBACK, {}) for _ in range(20)), return_exceptions=True
    )
    assert catalog.queries == 2
    assert all(isinstance(r, Unauthenticated) for r in results)  # now a key is needed


async def test_another_address_without_keys_is_refused_after_the_shared_query() -> None:
    catalog = CountingCatalog(exists=False)
    authenticate = KeyAuthenticator(GatewaySettings(key_cache_s=5), lambda: cast(Catalog, catalog))

    with pytest.raises(Unauthenticated, match="only this machine may call"):
        await authenticate(ELSEWHERE, {})
    assert await authenticate(LOOPBACK, {}) is None
    assert catalog.queries == 1
