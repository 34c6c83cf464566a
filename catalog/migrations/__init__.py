"""The catalog's alembic migrations, run to head by `catalog.db.Catalog` each time it opens a
database; no ``alembic.ini``. A new migration goes in ``versions/`` by hand, its
``down_revision`` the newest one's ``revision``; a written migration is never edited."""
