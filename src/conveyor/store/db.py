"""Engine setup and transaction boundaries; the only place that knows SQLite by name.

SQLite runs in WAL mode so readers (`conveyor status`) never block the engine's writes.
Every write transaction starts with `BEGIN IMMEDIATE`: it takes the write lock up front,
so a read-then-write transaction cannot fail half-way with SQLITE_BUSY, and two processes
can never both decide they hold the same concurrency lock.

PostgreSQL (`postgresql+psycopg://...`) keeps the same guarantees: every write transaction
first takes one transaction-scoped advisory lock, so writers take turns as on SQLite (the
store's read-then-write code, the audit chain and the event ids, committed in id order for
readers that page by id, rely on it); reads run in REPEATABLE READ, one snapshot each.
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
# Any number (ASCII "conw"); held by one PostgreSQL write transaction at a time.
PG_WRITE_LOCK = 0x636F6E77
# Execution option: this PostgreSQL write transaction takes the write lock itself, later
# (`lock_writes`), once row locks have told it that it has something to write.
_LOCK_LATER_OPTION = "conveyor_write_lock_later"


def default_url(state_dir: Path) -> str:
    return f"sqlite:///{(state_dir / 'conveyor.db').resolve()}"


def create_engine(url: str) -> sa.Engine:
    """The engine for `url`, configured; `migrate.open_engine` also brings its schema to
    the head revision."""
    _private_sqlite_files(url)
    # A server's connections can go away between transactions (a restart, a failover,
    # an idle timeout): PostgreSQL's are checked when taken from the pool, and replaced.
    remote = sa.engine.make_url(url).get_backend_name() == "postgresql"
    engine = sa.create_engine(url, pool_pre_ping=remote)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    elif engine.dialect.name == "postgresql":
        _configure_postgresql(engine)
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


def _configure_postgresql(engine: sa.Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        if options.get(_WRITE_OPTION, False) and not options.get(_LOCK_LATER_OPTION, False):
            lock_writes(conn)  # the first statement


@contextmanager
def write_transaction(engine: sa.Engine, *, lock_first: bool = True) -> Iterator[sa.Connection]:
    """One short transaction holding the database's write lock; commits on success.

    With `lock_first=False`, on PostgreSQL, the caller takes the write lock with
    `lock_writes` before its first write (SQLite always takes it first).
    """
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE_OPTION: True, _LOCK_LATER_OPTION: not lock_first})
        with conn.begin():
            yield conn


def lock_writes(conn: sa.Connection) -> None:
    """Take PostgreSQL's write lock in this transaction (no-op on SQLite, which holds it
    from BEGIN IMMEDIATE). Released by COMMIT or ROLLBACK, and by the server when the
    session dies."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})")


@contextmanager
def read_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A consistent snapshot for reads; takes no write lock."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        yield conn


def serialize_on(conn: sa.Connection, table: sa.Table) -> None:
    """Make concurrent write transactions on `table` take turns until commit.

    SQLite serializes every write transaction (BEGIN IMMEDIATE), and so does the write
    lock on PostgreSQL; the table lock keeps the guarantee for a transaction opened without
    `write_transaction`.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE")
