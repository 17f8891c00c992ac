"""Alembic's environment: migrate the connection `store/migrate.py` hands over.

That connection already holds the database's write lock inside an open transaction, so
Alembic runs every step in it (no transaction of its own) and the store commits once.
Batch mode makes ALTER work on SQLite, which cannot alter most of a table in place.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from conveyor.store.schema import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, sa.Connection):
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("run migrations through conveyor.store.migrate, or set sqlalchemy.url")
    connection = sa.create_engine(url).connect()

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
