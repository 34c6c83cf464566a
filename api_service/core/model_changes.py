"""What changes the catalog through a gateway: uploading a version (validated first, so a
refused file leaves nothing behind), deleting one, moving aliases and setting how many
workers the model host runs for a version. Every front door calls these; none writes the
catalog itself."""

from __future__ import annotations

import asyncio
import hashlib
import logging

from api_service.core.broker import TaskPublisher
from api_service.core.live_models import LiveModels
from api_service.core.references import References, catalog_call
from catalog.db import Catalog
from catalog.files import ModelFiles, sha256_key
from catalog.names import check_alias, check_model_name
from catalog.onnx_check import check_model
from catalog.records import Alias, Deployment, Version, VersionMetadata
from inferq.errors import BrokerUnavailable, Conflict
from inferq.names import Names, version_key
from inferq.settings import CatalogSettings

logger = logging.getLogger(__name__)

#: Uploads trial-loaded at once: each runs a child process that may take a core and
#: ``INFERQ_VALIDATION_MEMORY_BYTES``; the others wait their turn.
CONCURRENT_VALIDATIONS = 2


class ModelChanges:
    def __init__(
        self,
        catalog: Catalog,
        files: ModelFiles,
        settings: CatalogSettings,
        names: Names,
        publisher: TaskPublisher,
        live_models: LiveModels,
        references: References,
    ) -> None:
        self._catalog = catalog
        self._files = files
        self._settings = settings
        self._names = names
        self._publisher = publisher
        self._live_models = live_models
        self._references = references
        self._validations = asyncio.Semaphore(CONCURRENT_VALIDATIONS)

    @property
    def max_model_bytes(self) -> int:
        return self._settings.max_model_bytes

    async def upload(
        self, name: str, data: bytes, metadata: VersionMetadata, alias: str | None = None
    ) -> Version:
        """Validates ``data`` (`catalog.onnx_check`), stores the file and records the next
        version of ``name``, then points ``alias`` at it if one is given."""
        check_model_name(name)
        if alias is not None:
            check_alias(alias)  # refused before the upload is trial-loaded, not after
        async with self._validations:
            signature = await asyncio.to_thread(check_model, data, self._settings)
        sha256 = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        key = sha256_key(sha256)
        new_file = not await asyncio.to_thread(self._files.exists, key)
        if new_file:
            await asyncio.to_thread(self._files.put, data, sha256)
        try:
            version = await catalog_call(
                self._catalog.add_version,
                name,
                sha256,
                len(data),
                key,
                signature.to_json(),
                metadata,
            )
        except Exception:
            if new_file:  # the same bytes stored before belong to another version
                await asyncio.to_thread(self._files.delete, key)
            raise
        logger.info("model %s uploaded (%d bytes, sha256 %s)", version.ref, len(data), sha256)
        if alias is not None:
            await self.set_alias(name, alias, version.number)
            version = await catalog_call(self._catalog.get_version, name, version.number)
        return version

    async def delete_version(self, name: str, number: int) -> Version:
        """Marks the version deleted; refused (`Conflict`) while a worker serves it (it may
        hold tasks: the broker's count of waiting tasks leaves those out), while tasks wait
        in its queue, an alias names it or it is deployed, so no accepted task is stranded."""
        await catalog_call(self._catalog.get_version, name, number)  # 404 before 409
        served = version_key(name, number)
        entry = await self._live_models.get(served)
        if entry is not None and entry.workers:
            raise Conflict(
                f"version {served} has {len(entry.workers)} live worker(s), which may hold "
                "tasks: undeploy it (replicas 0) or stop them, then delete it",
                model=name,
                version=number,
                live_workers=len(entry.workers),
            )
        queue = self._names.model_queue(served)
        stats = await self._publisher.queue_stats(queue)
        if stats is None and not self._publisher.is_ready:
            raise BrokerUnavailable(
                "the broker is unavailable: cannot tell whether tasks wait for this version", 2
            )
        if stats is not None and stats.messages:
            raise Conflict(
                f"version {served} has {stats.messages} task(s) waiting in its queue and no "
                "worker: deploy it again (or start a worker) to finish them, then delete it",
                model=name,
                version=number,
                queued=stats.messages,
            )
        version = await catalog_call(self._catalog.delete_version, name, number)
        self._references.forget()
        return version

    async def set_alias(self, name: str, alias: str, number: int) -> Alias:
        """Points ``name@alias`` at version ``number``: new predictions go there (within the
        gateways' cache time); tasks already queued for the old version stay on its queue."""
        moved = await catalog_call(self._catalog.set_alias, name, alias, number)
        self._references.forget()
        logger.info("alias %s@%s now names version %d", name, alias, number)
        return moved

    async def remove_alias(self, name: str, alias: str) -> None:
        await catalog_call(self._catalog.remove_alias, name, alias)
        self._references.forget()

    async def set_replicas(self, name: str, number: int, replicas: int) -> Deployment:
        """How many workers the model host runs for the version (0: none)."""
        deployment = await catalog_call(self._catalog.set_replicas, name, number, replicas)
        logger.info("version %s@%d deployed with %d replica(s)", name, number, replicas)
        return deployment
