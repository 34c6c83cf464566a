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
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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
