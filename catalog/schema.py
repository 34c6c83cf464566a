"""The catalog's tables, as SQLAlchemy Core. The database is created and upgraded by the
migrations in `catalog/migrations` (each one frozen as written); this is what the code
queries, and the two must agree (`tests/catalog/test_db.py` checks it)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    # The number the model's last version got: incremented under the row's lock, so two
    # writers never get the same number and a deleted version's number is never reused.
    Column("last_version", Integer, nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("file_key", Text, nullable=False),
    Column("signature", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
)

#: A deployed version: the model host (`inferq host`) keeps ``replicas`` workers running for
#: it. No row means not deployed; undeploying removes the row.
deployments = Table(
    "deployments",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True),
    Column("replicas", Integer, nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

#: API keys (`catalog.keys`): only the secret's SHA-256 is kept. A revoked key stays, so its
#: id is never given again and lists can show it; a name is unique among the keys not
#: revoked (the partial index, which holds under concurrent creates too).
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key_id", String(12), nullable=False, unique=True),
    Column("name", String(64), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("models", JSON, nullable=True),
    Column("rate", Integer, nullable=True),
    Column("per", String(8), nullable=True),
    Column("max_in_flight", Integer, nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("revoked", DateTime(timezone=True), nullable=True),
    Column("last_rotated", DateTime(timezone=True), nullable=True),
    Index(
        "uq_api_keys_active_name",
        "name",
        unique=True,
        sqlite_where=text("revoked IS NULL"),
        postgresql_where=text("revoked IS NULL"),
    ),
)
