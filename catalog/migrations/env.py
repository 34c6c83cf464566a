"""Run by alembic on `catalog.db.Catalog`'s connection (``config.attributes["connection"]``),
inside the transaction that opened it."""

from __future__ import annotations

from alembic import context

from catalog.schema import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    render_as_batch=True,  # SQLite alters a table by copying it
)
with context.begin_transaction():
    context.run_migrations()
