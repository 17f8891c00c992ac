"""Engine setup and transaction boundaries; the only place that knows SQLite by name.

SQLite runs in WAL mode so readers (`conveyor status`) never block the engine's writes.
Every write transaction starts with `BEGIN IMMEDIATE`: it takes the write lock up front,
so a read-then-write transaction cannot fail half-way with SQLITE_BUSY, and two processes
can never both decide they hold the same concurrency lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from conveyor.store.private import private_file, tighten

_SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=10000",  # first, so the others wait for locks instead of failing
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",  # durable in WAL mode except on power loss; no fsync per commit
    "PRAGMA foreign_keys=ON",
)
# Execution option read by the `begin` hook: this connection is about to write.
_WRITE_OPTION = "conveyor_write"


def default_url(state_dir: Path) -> str:
    return f"sqlite:///{(state_dir / 'conveyor.db').resolve()}"


def create_engine(url: str) -> sa.Engine:
    """The engine for `url`, configured; `migrate.open_engine` also brings its schema to
    the head revision."""
    _private_sqlite_files(url)
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _private_sqlite_files(url: str) -> None:
    """A SQLite database file is created 0600 before SQLite opens it (its -wal and -shm
    files take its mode); one found open to others is tightened, with its -wal and -shm."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    database = Path(parsed.database)
    private_file(database)
    for suffix in ("-wal", "-shm"):
        companion = database.with_name(database.name + suffix)
        if companion.exists():
            tighten(companion)


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module; `_on_begin` emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        writing = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One short transaction holding the database's write lock; commits on success."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE_OPTION: True})
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A consistent snapshot for reads; takes no write lock."""
    with engine.connect() as conn:
        yield conn


def serialize_on(conn: sa.Connection, table: sa.Table) -> None:
    """Make concurrent write transactions on `table` take turns until commit.

    SQLite already serializes every write transaction (BEGIN IMMEDIATE); PostgreSQL needs an
    explicit table lock for the same check-then-act guarantee.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE")
