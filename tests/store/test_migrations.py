"""The schema is migrated at open: new databases start at head (on SQLite and PostgreSQL,
the same schema as every migration run from empty makes), databases made by earlier
releases (SQLite dumps in tests/data/store, written by those releases' code) upgrade with
their rows, and a database already at head is opened without importing Alembic."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from conveyor.errors import InfrastructureError
from conveyor.states import DeployState, RunState
from conveyor.store import LockState, NewJob, NewRun, Store
from conveyor.store.db import create_engine, write_transaction
from conveyor.store.migrate import HEAD_REVISION, MIGRATIONS, run_migrations, stored_revisions
from conveyor.store.procs import this_process
from conveyor.store.schema import metadata
from pg_server import server_programs

DUMPS = Path(__file__).parents[1] / "data" / "store"


def load_dump(state: Path, name: str) -> Path:
    state.mkdir()
    database = state / "conveyor.db"
    with sqlite3.connect(database) as db:
        db.executescript((DUMPS / name).read_text())
    db.close()
    return database


def schema_differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def schema_text(url: str) -> str:
    """The database's whole schema as its own tools print it: SQLite's CREATE statements,
    or `pg_dump --schema-only`."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        return "\n".join(f"{name}: {sql}" for name, sql in sqlite_schema(Path(parsed.database)))
    host = parsed.query["host"]
    assert isinstance(host, str) and parsed.username is not None and parsed.database is not None
    dump = [str(server_programs() / "pg_dump"), "--schema-only", "--no-owner"]
    dumped = subprocess.run(
        [*dump, f"--host={host}", f"--username={parsed.username}", parsed.database],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Newer pg_dumps fence the dump with a random key (\restrict KEY, \unrestrict KEY).
    return "\n".join(line for line in dumped.splitlines() if "restrict " not in line)


def sqlite_schema(database: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    db.close()
    return rows


def test_the_head_constant_is_alembics_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))

    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_a_new_database_is_created_at_head_as_the_migrations_make_it(
    tmp_path: Path, store_backend: str, new_empty_database: Callable[[], str]
) -> None:
    created_url, migrated_url = new_empty_database(), new_empty_database()
    with Store(tmp_path / "new", created_url) as store:
        with store.engine.connect() as conn:
            assert stored_revisions(conn) == {HEAD_REVISION}
        assert schema_differences(store.engine) == []
    # The same schema by running every migration from an empty database.
    migrated = create_engine(migrated_url)
    with write_transaction(migrated) as conn:
        run_migrations(conn)
    with migrated.connect() as conn:
        assert stored_revisions(conn) == {HEAD_REVISION}
    assert schema_differences(migrated) == []
    migrated.dispose()
    if store_backend == "postgresql":  # SQLite's batch mode rewrites CREATE TABLE texts
        assert schema_text(created_url) == schema_text(migrated_url)


def test_opening_twice_changes_nothing_and_does_not_import_alembic(
    tmp_path: Path, new_empty_database: Callable[[], str]
) -> None:
    url = new_empty_database()
    probe = (
        "import sys; from pathlib import Path; from conveyor.store import Store; "
        "Store(Path(sys.argv[1]), sys.argv[2]).close(); print('alembic' in sys.modules)"
    )
    opened = [
        subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path), url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for _ in range(2)
    ]
    before = schema_text(url)
    with Store(tmp_path, url):
        pass

    assert opened == ["False", "False"]
    assert schema_text(url) == before


def test_a_database_of_release_a76ae41_upgrades_with_its_rows(tmp_path: Path) -> None:
    database = load_dump(tmp_path / "state", "schema-a76ae41.sql")
    assert "ix_signal_samples_environment_ts" not in dict(sqlite_schema(database))

    with Store(tmp_path / "state") as store:
        run = store.get_run(1)
        jobs = store.get_jobs(1)
        deploy = store.ledger.deploys.get(1)
        samples = store.ledger.samples.of("production")
        with store.engine.connect() as conn:
            revisions = stored_revisions(conn)
            flags = conn.execute(sa.text("SELECT name FROM flags")).scalars().all()
        differences = schema_differences(store.engine)
        events = store.events(run_id=1)
        problems = store.audit_verify()

    assert (run.pipeline, run.state, run.commit_sha) == ("ci", RunState.SUCCESS, "abc123")
    assert [job.job_id for job in jobs] == ["lint", "test"]
    assert (deploy.state, deploy.progress) == (DeployState.SUCCEEDED, {"step": 1, "weight": 10})
    assert deploy.pid_started is not None  # a76ae41 recorded start times already
    assert [sample.signals["requests"] for sample in samples] == [0, 1, 2]
    assert flags == ["banner"]
    assert len(events) >= 4
    assert problems == []  # the audit chain survives too
    assert revisions == {HEAD_REVISION}
    assert differences == []
    assert "ix_signal_samples_environment_ts" in dict(sqlite_schema(database))
    with sqlite3.connect(database) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(environments)")}
    db.close()
    assert "samples_pruned_before" in columns


def test_a_database_from_before_start_times_gets_the_columns(tmp_path: Path) -> None:
    """b9667a6 predates `pid_started` (caba1f2 added it to three tables)."""
    database = load_dump(tmp_path / "state", "schema-b9667a6.sql")

    with Store(tmp_path / "state") as store:
        old_deploy = store.ledger.deploys.get(1)
        run_id = store.create_run(NewRun("ci"), [NewJob("deploy", "deploy")])
        ticket = store.lock_enqueue("deploy", run_id, "deploy", supersede=False)
        differences = schema_differences(store.engine)

    assert (old_deploy.release_id, old_deploy.pid_started) == ("r-0001", None)
    assert ticket.state is LockState.HOLDING
    assert ticket.pid_started == this_process().started
    assert differences == []
    with sqlite3.connect(database) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    db.close()
    assert "pid_started" in columns


def test_a_database_from_a_newer_release_is_refused(tmp_path: Path, store_url: str | None) -> None:
    with Store(tmp_path, store_url) as store, store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))

    with pytest.raises(InfrastructureError, match="9999_from_the_future"):
        Store(tmp_path, store_url)
