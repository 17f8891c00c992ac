"""Write a small Conveyor database with a few rows of every kind and print it as SQL.

The dumps beside this script were made by running it against the code of the release they
are named after, e.g. for a76ae41:

    git worktree add /tmp/conveyor-a76ae41 a76ae41
    PYTHONPATH=/tmp/conveyor-a76ae41/src python tests/data/store/make_dump.py \
        > tests/data/store/schema-a76ae41.sql

It uses only the Store's public API of those releases (`store.deploys`, which is
`store.ledger` since the ledger was split), so the rows are the ones a real release wrote
(tests/store/test_migrations.py loads them and opens them with the current store).
"""

from __future__ import annotations

import importlib
import sqlite3
import sys
import tempfile
from pathlib import Path

from conveyor.flags.model import Flag
from conveyor.flags.store import FlagLedger
from conveyor.states import DeployState, JobState, RunState
from conveyor.store import CacheEntry, NewJob, NewRun, Store
from conveyor.store.records import EventKind

# The module of those releases (store/ledger/samples.py today).
SampleRow = importlib.import_module("conveyor.store.deploys").SampleRow


def fill(store: Store) -> None:
    run_id = store.create_run(
        NewRun(pipeline="ci", commit_sha="abc123", branch="main", trigger={"manual": True}),
        [NewJob(job_id="lint", name="lint"), NewJob(job_id="test", name="test", needs=("lint",))],
    )
    store.set_job_state(run_id, "lint", JobState.RUNNING)
    store.set_job_state(run_id, "lint", JobState.SUCCESS, exit_code=0)
    store.add_report(run_id, "lint", "gate", "sha256:" + "0" * 64, {"passed": True})
    store.cache_put(
        CacheEntry(key="k1", pipeline="ci", job_id="lint", run_id=run_id, components={"a": "b"})
    )
    ticket = store.lock_enqueue("deploy-prod", run_id, "test", supersede=False)
    store.lock_release(ticket.id)
    store.set_run_state(run_id, RunState.SUCCESS)

    ledger = store.deploys
    ledger.ensure_environment("production", 8000, 8001)
    record = ledger.begin_deploy(
        "production",
        release_id="r-0001",
        repository="shop",
        digest="sha256:" + "1" * 64,
        ports=[9000],
        previous=None,
        actor="alice",
        run_id=run_id,
    )
    ledger.set_progress(record.id, {"step": 1, "weight": 10})
    ledger.finish_deploy(record.id, DeployState.SUCCEEDED, None)
    ledger.record(EventKind.SMOKE_RESULT, "production", passed=True)
    ledger.add_samples(
        [
            SampleRow("production", "r-0001", 1_700_000_000.0 + i, 100, {"requests": i}, None)
            for i in range(3)
        ]
    )
    FlagLedger(store.engine).define("production", Flag(name="banner", enabled=True), "alice")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        with Store(Path(folder) / "state") as store:
            fill(store)
        connection = sqlite3.connect(Path(folder) / "state" / "conveyor.db")
        try:
            sys.stdout.writelines(line + "\n" for line in connection.iterdump())
        finally:
            connection.close()


if __name__ == "__main__":
    main()
