"""Turns the model a client names into the served name its tasks go to: ``model_b`` (a class
model, live in the registry) stays ``model_b``; ``digits``, ``digits@3`` and
``digits@production`` are looked up in the catalog and become ``digits@3``. Answers are kept
briefly (``INFERQ_REGISTRY_CACHE_S``), so moving an alias reaches new traffic within that
time and the hot path rarely asks the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from api_service.core.live_models import LiveModels
from catalog.db import Catalog
from catalog.records import Version
from inferq.errors import CatalogUnavailable, ModelNotFound
from inferq.names import version_key

P = ParamSpec("P")
T = TypeVar("T")

#: Seconds a client is told to wait when the catalog's database does not answer.
CATALOG_RETRY_S = 2.0


class References:
    """The served names of references, kept ``cache_s``. Two rules keep the catalog off the
    hot path: one lookup per reference at a time (the requests that arrive meanwhile wait for
    it, rather than each asking the database), and an answer past its time is still given
    while one lookup refreshes it in the background; a refresh that fails drops it, so the
    next request asks again and gets the error."""

    def __init__(self, catalog: Catalog, live_models: LiveModels, cache_s: float) -> None:
        self._catalog = catalog
        self._live_models = live_models
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, str]] = {}
        self._lookups: dict[str, asyncio.Future[str]] = {}

    async def served_name(self, ref: str) -> str:
        """The served name ``ref`` stands for; `ModelNotFound` when nothing does."""
        cached = self._cache.get(ref)
        if cached is None:
            return await asyncio.shield(self._lookup_once(ref))
        if cached[0] <= time.monotonic():
            self._lookup_once(ref)  # refreshed in the background
        return cached[1]

    async def version(self, ref: str) -> Version:
        """The catalog version ``ref`` names (`catalog.db.Catalog.resolve`)."""
        return await catalog_call(self._catalog.resolve, ref)

    def forget(self) -> None:
        """Drop what is kept, after this gateway changed an alias or a version."""
        self._cache.clear()

    def _lookup_once(self, ref: str) -> asyncio.Future[str]:
        lookup = self._lookups.get(ref)
        if lookup is None:
            lookup = asyncio.ensure_future(self._lookup(ref))
            self._lookups[ref] = lookup
            lookup.add_done_callback(lambda done: self._looked_up(ref, done))
        return lookup

    def _looked_up(self, ref: str, lookup: asyncio.Future[str]) -> None:
        del self._lookups[ref]
        if lookup.cancelled() or lookup.exception() is not None:
            self._cache.pop(ref, None)
        else:  # only names that exist are kept: any client can invent endless others
            self._cache[ref] = (time.monotonic() + self._cache_s, lookup.result())

    async def _lookup(self, ref: str) -> str:
        if "@" not in ref and await self._live_models.get(ref) is not None:
            return ref  # a class model: registered under its bare name
        try:
            version = await self.version(ref)
        except ModelNotFound as error:
            raise ModelNotFound(
                f"no model {ref!r}; GET /models lists the live ones, GET /catalog all",
                **error.details,
            ) from None
        return version_key(version.model, version.number)


async def catalog_call(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Runs a (blocking) catalog call in a thread; a database that fails answers 503."""
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except SQLAlchemyError as error:
        raise CatalogUnavailable(
            f"the catalog's database is unavailable ({type(error).__name__})", CATALOG_RETRY_S
        ) from error
