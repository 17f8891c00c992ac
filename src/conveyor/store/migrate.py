"""Bring a database to the schema this code expects, at every open.

Three cases, told apart by Alembic's `alembic_version` table:
- at head already (every open but the first after an upgrade): one read, and Alembic is
  not even imported, so opening the store stays cheap for `conveyor run`;
- a new, empty database: the tables from `schema.metadata` and the head revision stamped,
  as Alembic's cookbook does (a test holds this equal to running every migration);
- anything else (an older revision, or a database made before migrations, which has tables
  but no `alembic_version`): `alembic upgrade head`, whose baseline adopts the latter.
Changes happen inside the database's write lock, so two first opens do not race.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from conveyor.errors import InfrastructureError
from conveyor.store.db import create_engine, read_transaction, write_transaction
from conveyor.store.schema import metadata

# The newest revision in migrations/versions; tests/store/test_migrations.py checks it.
HEAD_REVISION = "0013_quality"
MIGRATIONS = Path(__file__).with_name("migrations")

# Alembic's own version table, as Alembic creates it (alembic.runtime.migration).
_VERSION_TABLE = "alembic_version"
_version_table = sa.Table(
    _VERSION_TABLE,
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name=f"{_VERSION_TABLE}_pkc"),
)
# Any number; PostgreSQL's advisory lock plays SQLite's BEGIN IMMEDIATE for the upgrade.
_PG_MIGRATION_LOCK = 0x636F6E76


def open_engine(url: str) -> sa.Engine:
    """The engine for `url`, its database at the head revision (created if new)."""
    engine = create_engine(url)
    try:
        bring_to_head(engine)
    except BaseException:
        engine.dispose()  # a refused database leaves no pooled connection behind
        raise
    return engine


def bring_to_head(engine: sa.Engine) -> None:
    with read_transaction(engine) as conn:
        if stored_revisions(conn) == {HEAD_REVISION}:
            return
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        revisions = stored_revisions(conn)
        if revisions == {HEAD_REVISION}:
            return  # another process upgraded it while this one waited for the lock
        if not revisions and not sa.inspect(conn).get_table_names():
            metadata.create_all(conn)
            _version_table.create(conn)
            conn.execute(sa.insert(_version_table).values(version_num=HEAD_REVISION))
            return
        run_migrations(conn)


def stored_revisions(conn: sa.Connection) -> set[str]:
    """The revisions `alembic_version` records; empty when it does not exist."""
    if not sa.inspect(conn).has_table(_VERSION_TABLE):
        return set()
    return {str(row[0]) for row in conn.execute(sa.select(_version_table.c.version_num))}


def run_migrations(conn: sa.Connection) -> None:
    """`alembic upgrade head` on this connection, inside its transaction."""
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    try:
        command.upgrade(config, "head")
    except CommandError as error:  # e.g. a revision this code does not know: a newer release
        raise InfrastructureError(
            f"cannot migrate the database: {error}",
            hint="a newer Conveyor may have upgraded it; run that version",
        ) from error
