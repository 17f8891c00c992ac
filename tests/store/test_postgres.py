"""PostgreSQL as the store, end to end: `conveyor run` with CONVEYOR_DATABASE_URL keeps
everything in the database, connections lost between transactions are replaced, a
connection lost inside one leaves nothing half-written, and an unreachable server is one
clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import MakeProject, run_cli
from conveyor.states import JobState, RunState
from conveyor.store import NewJob, NewRun, Store
from conveyor.store.db import write_transaction
from conveyor.store.schema import runs
from pg_server import PostgresServer

pytestmark = pytest.mark.real

TWO_JOBS = """\
version: 1
jobs:
  build:
    run: echo built
  test:
    needs: [build]
    run: {terminate}
"""
# What a failover does to the run's open connections, from inside a job.
TERMINATE_OTHERS = (
    "psql -q -h {host} -U postgres -d {database} -c "
    '"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity '
    'WHERE datname = current_database() AND pid <> pg_backend_pid()"'
)


def _terminate_others(server: PostgresServer, database: str) -> None:
    with server.connect(database) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_a_run_is_recorded_in_postgresql_and_survives_its_connections_being_cut(
    git_project: MakeProject, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = postgres_server.new_database()
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", postgres_server.url(database))
    terminate = TERMINATE_OTHERS.format(host=postgres_server.socket_dir, database=database)
    project = git_project(TWO_JOBS.format(terminate=terminate))

    ran = run_cli(["run"], project.root)
    status = run_cli(["status", "-o", "json"], project.root)

    assert ran.exit_code == 0, ran.stderr
    shown = status.json()
    assert shown["run"]["state"] == RunState.SUCCESS
    assert [(job["job_id"], job["state"]) for job in shown["jobs"]] == [
        ("build", JobState.SUCCESS),
        ("test", JobState.SUCCESS),
    ]
    assert not (project.root / ".conveyor" / "conveyor.db").exists()  # no SQLite file
    with postgres_server.connect(database) as conn:
        assert conn.execute("SELECT state FROM runs").fetchall() == [("success",)]


def test_a_connection_lost_inside_a_transaction_writes_nothing(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = postgres_server.new_database()
    with Store(tmp_path, postgres_server.url(database)) as store:
        with pytest.raises(sa.exc.OperationalError), write_transaction(store.engine) as conn:
            conn.execute(
                sa.insert(runs).values(pipeline="ci", state="running", trigger={}, started_at=0.0)
            )
            _terminate_others(postgres_server, database)
            conn.execute(sa.select(runs.c.id))  # the server is gone: nothing commits

        assert store.list_runs() == []  # a new connection, and no half-written run
        run_id = store.create_run(NewRun("ci"), [NewJob("build", "build")])
        assert [run.id for run in store.list_runs()] == [run_id]


def test_an_unreachable_database_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = tmp_path / "no-server"
    nowhere.mkdir()
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", f"postgresql+psycopg://postgres@/x?host={nowhere}")
    (tmp_path / "conveyor.yml").write_text("version: 1\njobs:\n  a: {run: 'true'}\n")

    text = run_cli(["history"], tmp_path)
    as_json = run_cli(["history", "-o", "json"], tmp_path)

    assert text.exit_code == 3, text.stderr
    assert str(nowhere) in text.stderr and "Traceback" not in text.stderr
    assert as_json.exit_code == 3
    error = json.loads(as_json.stderr)["error"]
    assert error["code"] == "infrastructure"
    assert "CONVEYOR_DATABASE_URL" in error["hint"]
