import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from conveyor.store import Store, default_url, open_engine
from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.schema import cache_entries


def test_default_url_is_a_sqlite_file_in_the_state_dir(tmp_path: Path) -> None:
    assert default_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'conveyor.db'}"


def test_sqlite_connections_use_wal_and_the_configured_pragmas(tmp_path: Path) -> None:
    with Store(tmp_path) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
    assert (tmp_path / "conveyor.db").is_file()


def test_open_engine_creates_the_tables_once_and_reopens_an_existing_db(
    new_empty_database: Callable[[], str],
) -> None:
    url = new_empty_database()
    first = open_engine(url)
    second = open_engine(url)
    try:
        tables = set(sa.inspect(second).get_table_names())
        assert {"events", "runs", "jobs", "cache_entries", "lock_tickets"} <= tables
    finally:
        first.dispose()
        second.dispose()


def _count(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(cache_entries)).scalar_one())


def test_write_transactions_take_turns_and_reads_see_one_snapshot(
    tmp_path: Path, store_url: str | None
) -> None:
    """Read-then-write code relies on it: a second writer starts only after the first
    commits (BEGIN IMMEDIATE on SQLite, the write lock on PostgreSQL), and sees its rows."""
    with Store(tmp_path, store_url) as first, Store(tmp_path, store_url) as second:
        holding, seen = threading.Event(), []

        def later_writer() -> None:
            holding.wait()
            with write_transaction(second.engine) as conn:
                seen.append(_count(conn))

        thread = threading.Thread(target=later_writer)
        thread.start()
        with read_transaction(second.engine) as reader:
            before = _count(reader)
            with write_transaction(first.engine) as conn:
                conn.execute(
                    sa.insert(cache_entries).values(
                        key="k", pipeline="ci", job_id="a", created_at=0.0, components={}
                    )
                )
                holding.set()
                time.sleep(0.2)  # the other writer is waiting now, not writing
                assert seen == []
            assert _count(reader) == before == 0  # the reader's snapshot predates the commit
        thread.join()

    assert seen == [1]
