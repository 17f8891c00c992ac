from pathlib import Path

import sqlalchemy as sa

from conveyor.store import Store, default_url, open_engine


def test_default_url_is_a_sqlite_file_in_the_state_dir(tmp_path: Path) -> None:
    assert default_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'conveyor.db'}"


def test_sqlite_connections_use_wal_and_the_configured_pragmas(tmp_path: Path) -> None:
    with Store(tmp_path) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
    assert (tmp_path / "conveyor.db").is_file()


def test_open_engine_creates_the_tables_once_and_reopens_an_existing_db(tmp_path: Path) -> None:
    url = default_url(tmp_path)
    first = open_engine(url)
    second = open_engine(url)
    try:
        tables = set(sa.inspect(second).get_table_names())
        assert {"events", "runs", "jobs", "cache_entries", "lock_tickets"} <= tables
    finally:
        first.dispose()
        second.dispose()
