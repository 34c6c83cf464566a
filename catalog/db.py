"""The catalog in SQL: `Catalog`, opened from an SQLAlchemy URL (an SQLite file, or
PostgreSQL when several gateways share it), migrated to head when it opens. Each method is
one transaction and blocking; the gateway calls it through `asyncio.to_thread`.

References (``name``, ``name@3``, ``name@alias``) are parsed in `catalog.names`; a bare name
means the newest version that is not deleted (the reserved alias ``latest``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Row, create_engine, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from catalog.keys import (
    check_key_name,
    check_limits,
    check_models,
    check_scopes,
    new_token,
    secret_hash,
)
from catalog.names import LATEST, check_alias, check_model_name, parse_ref
from catalog.records import (
    Alias,
    ApiKey,
    Deployment,
    Model,
    NewKey,
    Version,
    VersionMetadata,
    VersionState,
)
from catalog.schema import aliases, api_keys, deployments, models, versions
from inferq.errors import Conflict, InvalidRequest, KeyNotFound, ModelNotFound

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Serialises the migrations of gateways opening one PostgreSQL database at once.
_MIGRATION_LOCK = 0x1F0CA7A1
#: The most workers one version may ask the model host for.
MAX_REPLICAS = 64


class Catalog:
    """Models, their numbered versions and their aliases. Open with `Catalog.open`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, url: str) -> Catalog:
        """Connect to ``url`` and bring its tables to the newest migration: a new SQLite file
        or an empty PostgreSQL schema gets them, an older one is upgraded, a current one is
        left as it is."""
        engine = _engine(url)
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        return cls(engine)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- models and versions ---------------------------------------------------------------

    def add_version(
        self,
        name: str,
        sha256: str,
        size: int,
        file_key: str,
        signature: Mapping[str, Any],
        metadata: VersionMetadata,
        *,
        model_description: str | None = None,
    ) -> Version:
        """Record the next version of ``name``, creating the model with its first version.
        Its number is the model's last one plus one, taken under the model row's lock, so
        concurrent writers get distinct numbers and a deleted version's number is not reused."""
        check_model_name(name)
        now = datetime.now(UTC)
        with self._transaction() as conn:
            conn.execute(
                _insert(conn, models)
                .values(name=name, description=model_description or "", created=now, last_version=0)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            changes: dict[str, Any] = {"last_version": models.c.last_version + 1}
            if model_description is not None:
                changes["description"] = model_description
            model_id, number = conn.execute(
                models.update()
                .where(models.c.name == name)
                .values(changes)
                .returning(models.c.id, models.c.last_version)
            ).one()
            conn.execute(
                versions.insert().values(
                    model_id=model_id,
                    number=number,
                    sha256=sha256,
                    size=size,
                    file_key=file_key,
                    signature=dict(signature),
                    metadata=metadata.to_json(),
                    state=VersionState.READY.value,
                    created=now,
                )
            )
            return self._version(conn, name, number)

    def list_models(self) -> list[Model]:
        with self._transaction() as conn:
            rows = conn.execute(select(models).order_by(models.c.name)).all()
        return [Model(r.name, r.description, _utc(r.created)) for r in rows]

    def get_model(self, name: str) -> Model:
        with self._transaction() as conn:
            row = conn.execute(select(models).where(models.c.name == name)).one_or_none()
        if row is None:
            raise ModelNotFound(f"no model named {name!r}", model=name)
        return Model(row.name, row.description, _utc(row.created))

    def list_versions(self, name: str, *, include_deleted: bool = False) -> list[Version]:
        """The model's versions, oldest first."""
        with self._transaction() as conn:
            model_id = _model_id(conn, name)
            query = select(versions).where(versions.c.model_id == model_id)
            if not include_deleted:
                query = query.where(versions.c.state == VersionState.READY.value)
            rows = conn.execute(query.order_by(versions.c.number)).all()
            return [_to_version(conn, name, row) for row in rows]

    def get_version(self, name: str, number: int) -> Version:
        """Version ``number`` of ``name``; a deleted one is not found."""
        with self._transaction() as conn:
            return self._version(conn, name, number)

    def resolve(self, ref: str) -> Version:
        """The version ``ref`` names: ``name`` (its newest version), ``name@3`` or
        ``name@alias``. Raises `InvalidRequest` for a malformed reference, `ModelNotFound`
        for an unknown model, version or alias."""
        parsed = parse_ref(ref)
        with self._transaction() as conn:
            model_id = _model_id(conn, parsed.model)
            if parsed.version is not None:
                return self._version(conn, parsed.model, parsed.version)
            if parsed.alias == LATEST:
                number = conn.execute(
                    select(func.max(versions.c.number)).where(
                        versions.c.model_id == model_id,
                        versions.c.state == VersionState.READY.value,
                    )
                ).scalar_one()
                if number is None:
                    raise ModelNotFound(
                        f"model {parsed.model!r} has no versions", model=parsed.model
                    )
                return self._version(conn, parsed.model, number)
            number = conn.execute(
                select(versions.c.number)
                .join(aliases, aliases.c.version_id == versions.c.id)
                .where(aliases.c.model_id == model_id, aliases.c.name == parsed.alias)
            ).scalar_one_or_none()
            if number is None:
                raise ModelNotFound(
                    f"model {parsed.model!r} has no alias {parsed.alias!r}",
                    model=parsed.model,
                    alias=parsed.alias,
                )
            return self._version(conn, parsed.model, number)

    def delete_version(self, name: str, number: int) -> Version:
        """Mark the version deleted (its number stays taken). Refused while an alias points
        to it or it is deployed: the aliases must be moved or removed, and the version
        undeployed, first."""
        with self._transaction() as conn:
            version_id = _version_id(conn, name, number, lock=True)
            replicas = _replicas(conn, version_id)
            if replicas:
                raise Conflict(
                    f"version {name}@{number} is deployed ({replicas} replicas): "
                    "undeploy it first: replicas 0",
                    model=name,
                    version=number,
                    replicas=replicas,
                )
            pointing = (
                conn.execute(
                    select(aliases.c.name)
                    .where(aliases.c.version_id == version_id)
                    .order_by(aliases.c.name)
                )
                .scalars()
                .all()
            )
            if pointing:
                names = ", ".join(pointing)
                raise Conflict(
                    f"version {name}@{number} is the target of the alias(es) {names}: "
                    "move or remove them before deleting it",
                    model=name,
                    version=number,
                    aliases=list(pointing),
                )
            conn.execute(
                versions.update()
                .where(versions.c.id == version_id)
                .values(state=VersionState.DELETED.value)
            )
            row = conn.execute(select(versions).where(versions.c.id == version_id)).one()
            return _to_version(conn, name, row)

    # -- aliases ---------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, number: int) -> Alias:
        """Point ``name@alias`` at version ``number``: set it, or move it if it exists."""
        check_alias(alias)
        with self._transaction() as conn:
            model_id = _model_id(conn, name)
            version_id = _version_id(conn, name, number, lock=True)
            conn.execute(
                _insert(conn, aliases)
                .values(model_id=model_id, name=alias, version_id=version_id)
                .on_conflict_do_update(
                    index_elements=["model_id", "name"], set_={"version_id": version_id}
                )
            )
        return Alias(name, alias, number)

    def remove_alias(self, name: str, alias: str) -> None:
        with self._transaction() as conn:
            model_id = _model_id(conn, name)
            removed = conn.execute(
                aliases.delete().where(aliases.c.model_id == model_id, aliases.c.name == alias)
            ).rowcount
        if not removed:
            raise ModelNotFound(f"model {name!r} has no alias {alias!r}", model=name, alias=alias)

    def list_aliases(self, name: str) -> list[Alias]:
        with self._transaction() as conn:
            model_id = _model_id(conn, name)
            rows = conn.execute(
                select(aliases.c.name, versions.c.number)
                .join(versions, versions.c.id == aliases.c.version_id)
                .where(aliases.c.model_id == model_id)
                .order_by(aliases.c.name)
            ).all()
        return [Alias(name, row.name, row.number) for row in rows]

    # -- deployments -----------------------------------------------------------------------

    def set_replicas(self, name: str, number: int, replicas: int) -> Deployment:
        """Ask the model host for ``replicas`` workers of version ``number``; 0 undeploys it."""
        if not 0 <= replicas <= MAX_REPLICAS:
            raise InvalidRequest(
                f"replicas must be between 0 and {MAX_REPLICAS}, not {replicas}",
                replicas=replicas,
            )
        with self._transaction() as conn:
            version_id = _version_id(conn, name, number, lock=True)
            if replicas == 0:
                conn.execute(deployments.delete().where(deployments.c.version_id == version_id))
            else:
                now = datetime.now(UTC)
                conn.execute(
                    _insert(conn, deployments)
                    .values(version_id=version_id, replicas=replicas, updated=now)
                    .on_conflict_do_update(
                        index_elements=["version_id"],
                        set_={"replicas": replicas, "updated": now},
                    )
                )
        return Deployment(name, number, replicas)

    def deployments(self) -> list[Deployment]:
        """The deployed versions (replicas > 0, not deleted), by model name and number."""
        with self._transaction() as conn:
            rows = conn.execute(
                select(models.c.name, versions.c.number, deployments.c.replicas)
                .join(versions, versions.c.id == deployments.c.version_id)
                .join(models, models.c.id == versions.c.model_id)
                .where(
                    deployments.c.replicas > 0,
                    versions.c.state == VersionState.READY.value,
                )
                .order_by(models.c.name, versions.c.number)
            ).all()
        return [Deployment(row.name, row.number, row.replicas) for row in rows]

    # -- API keys --------------------------------------------------------------------------

    def create_key(
        self,
        name: str,
        scopes: Iterable[str],
        models: Iterable[str] | None = None,
        rate: int | None = None,
        per: str | None = None,
        max_in_flight: int | None = None,
    ) -> NewKey:
        """A new key, with its token (shown once). Its fields pass `catalog.keys`' checks
        (`InvalidRequest`); a name taken by a key not revoked is a `Conflict`."""
        rate, per, max_in_flight = check_limits(rate, per, max_in_flight)
        fields = {
            "name": check_key_name(name),
            "scopes": list(check_scopes(scopes)),
            "models": _listed(check_models(models)),
            "rate": rate,
            "per": per,
            "max_in_flight": max_in_flight,
        }
        with self._transaction() as conn:
            return _insert_key(conn, fields)

    def list_keys(self, *, include_revoked: bool = False) -> list[ApiKey]:
        """The keys, oldest first; revoked ones only with ``include_revoked``."""
        query = select(api_keys)
        if not include_revoked:
            query = query.where(api_keys.c.revoked.is_(None))
        with self._transaction() as conn:
            rows = conn.execute(query.order_by(api_keys.c.created, api_keys.c.id)).all()
        return [_to_key(row) for row in rows]

    def get_key(self, key_id: str) -> ApiKey:
        """The key ``key_id``, revoked or not; `KeyNotFound` if there is none."""
        with self._transaction() as conn:
            return _to_key(_key_row(conn, key_id))

    def find_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key ``key_id`` and its secret's SHA-256 (to check a token against), revoked
        ones included so that they can be refused as such; None if there is none."""
        with self._transaction() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).one_or_none()
        return (_to_key(row), row.secret_sha256) if row is not None else None

    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke the key (it stays listed with ``--all``); a revoked key is returned as it
        is."""
        with self._transaction() as conn:
            conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked.is_(None))
                .values(revoked=datetime.now(UTC))
            )
            return _to_key(_key_row(conn, key_id))

    def rotate_key(self, key_id: str) -> NewKey:
        """Replace the key: a new key (new id and secret) with its name, scopes, models and
        limits, made as the old one is revoked, in one transaction. A revoked key cannot be
        rotated (`Conflict`): create a new one."""
        with self._transaction() as conn:
            old = _key_row(conn, key_id, lock=True)
            if old.revoked is not None:
                raise Conflict(
                    f"key {key_id} ({old.name}) is revoked and cannot be rotated: create a new "
                    "key instead",
                    key_id=key_id,
                )
            now = datetime.now(UTC)
            conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == key_id)
                .values(revoked=now, last_rotated=now)
            )
            fields = {c: old._mapping[c] for c in ("name", "scopes", "models", "rate", "per")}
            return _insert_key(conn, {**fields, "max_in_flight": old.max_in_flight})

    def has_active_keys(self) -> bool:
        """Whether any key is not revoked (then the gateway, in ``INFERQ_AUTH=auto``,
        requires keys)."""
        with self._transaction() as conn:
            found = conn.execute(
                select(api_keys.c.id).where(api_keys.c.revoked.is_(None)).limit(1)
            ).first()
        return found is not None

    # -- helpers ---------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    def _version(self, conn: Connection, name: str, number: int) -> Version:
        version_id = _version_id(conn, name, number)
        row = conn.execute(select(versions).where(versions.c.id == version_id)).one()
        return _to_version(conn, name, row)


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    raise ValueError(f"the catalog needs SQLite or PostgreSQL, not {parsed.get_backend_name()}")


def _sqlite_connect(dbapi_connection: Any, _record: object) -> None:
    # Let SQLAlchemy's "begin" event start transactions, so that each is BEGIN IMMEDIATE:
    # a second writer waits for the first instead of failing on its upgrade to a write lock.
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA foreign_keys = ON")


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _insert(conn: Connection, table: Any) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing`` / ``_do_update``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _model_id(conn: Connection, name: str) -> int:
    model_id = conn.execute(select(models.c.id).where(models.c.name == name)).scalar_one_or_none()
    if model_id is None:
        raise ModelNotFound(f"no model named {name!r}", model=name)
    return int(model_id)


def _version_id(conn: Connection, name: str, number: int, *, lock: bool = False) -> int:
    """The id of a version that is not deleted; ``lock`` holds its row to the transaction's
    end (PostgreSQL), so that setting an alias and deleting its version cannot cross."""
    query = (
        select(versions.c.id)
        .join(models, models.c.id == versions.c.model_id)
        .where(
            models.c.name == name,
            versions.c.number == number,
            versions.c.state == VersionState.READY.value,
        )
    )
    if lock:
        query = query.with_for_update(of=versions)
    version_id = conn.execute(query).scalar_one_or_none()
    if version_id is None:
        _model_id(conn, name)  # an unknown model says so
        raise ModelNotFound(f"model {name!r} has no version {number}", model=name, version=number)
    return int(version_id)


def _to_version(conn: Connection, name: str, row: Row[Any]) -> Version:
    pointing = (
        conn.execute(
            select(aliases.c.name).where(aliases.c.version_id == row.id).order_by(aliases.c.name)
        )
        .scalars()
        .all()
    )
    return Version(
        model=name,
        number=row.number,
        sha256=row.sha256,
        size=row.size,
        file_key=row.file_key,
        signature=dict(row.signature),
        metadata=VersionMetadata.from_json(row._mapping["metadata"]),
        state=VersionState(row.state),
        created=_utc(row.created),
        aliases=tuple(pointing),
        replicas=_replicas(conn, row.id),
    )


def _replicas(conn: Connection, version_id: int) -> int:
    replicas = conn.execute(
        select(deployments.c.replicas).where(deployments.c.version_id == version_id)
    ).scalar_one_or_none()
    return int(replicas or 0)


def _insert_key(conn: Connection, fields: dict[str, Any]) -> NewKey:
    """Store a new key with ``fields``; `Conflict` if a key not revoked has its name (the
    partial unique index decides, so two creates at once cannot both take it)."""
    key_id, secret, token = new_token()
    row = conn.execute(
        _insert(conn, api_keys)
        .values(
            key_id=key_id, secret_sha256=secret_hash(secret), created=datetime.now(UTC), **fields
        )
        .on_conflict_do_nothing(index_elements=["name"], index_where=api_keys.c.revoked.is_(None))
        .returning(*api_keys.c)
    ).one_or_none()
    if row is None:
        name = fields["name"]
        holder = conn.execute(
            select(api_keys.c.key_id).where(api_keys.c.name == name, api_keys.c.revoked.is_(None))
        ).scalar_one_or_none()
        raise Conflict(
            f"a key named {name!r} exists ({holder}): revoke or rotate it, or choose another name",
            name=name,
            key_id=holder,
        )
    return NewKey(_to_key(row), token)


def _key_row(conn: Connection, key_id: str, *, lock: bool = False) -> Row[Any]:
    query = select(api_keys).where(api_keys.c.key_id == key_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    if row is None:
        raise KeyNotFound(f"no key {key_id!r}; `inferq keys list --all` lists them", key_id=key_id)
    return row


def _to_key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        name=row.name,
        scopes=tuple(row.scopes),
        models=tuple(row.models) if row.models is not None else None,
        rate=row.rate,
        per=row.per,
        max_in_flight=row.max_in_flight,
        created=_utc(row.created),
        revoked=_utc(row.revoked) if row.revoked is not None else None,
        rotated=_utc(row.last_rotated) if row.last_rotated is not None else None,
    )


def _listed(names: tuple[str, ...] | None) -> list[str] | None:
    return list(names) if names is not None else None


def _utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; every time the catalog stores is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
