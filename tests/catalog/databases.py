"""A catalog database of a test's own on the real PostgreSQL at 127.0.0.1:5432 (database
``test``, or ``INFERQ_TEST_POSTGRES_URL``): a schema made for the test and dropped after, so
tests sharing the server never touch each other's tables."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import sqlalchemy as sa

POSTGRES = os.environ.get(
    "INFERQ_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)


@contextlib.contextmanager
def postgres_schema(prefix: str = "test_catalog") -> Iterator[str]:
    """Yields a catalog URL whose tables go to a new schema; drops the schema after."""
    schema = f"{prefix}_{os.urandom(6).hex()}"
    admin = sa.create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
