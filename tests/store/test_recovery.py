import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.states import JobState, RunState
from conveyor.store import EventKind, LockState, NewJob, NewRun, Store

# A conveyor process that starts a run, takes a lock and dies without finishing.
_DYING_RUN = """
import sys
from pathlib import Path
from conveyor.states import JobState
from conveyor.store import NewJob, NewRun, Store

with Store(Path(sys.argv[1]), sys.argv[2] or None) as store:
    run_id = store.create_run(
        NewRun("ci"), [NewJob("build", "build"), NewJob("test", "test"), NewJob("lint", "lint")]
    )
    store.set_job_state(run_id, "build", JobState.RUNNING)
    store.set_job_state(run_id, "lint", JobState.SKIPPED)
    store.lock_enqueue("deploy", run_id, "build", supersede=False)
    print(run_id)
"""


@pytest.fixture
def store(tmp_path: Path, store_url: str | None) -> Iterator[Store]:
    with Store(tmp_path, store_url) as opened:
        yield opened


def _run_in_dead_process(state_dir: Path, url: str | None) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _DYING_RUN, str(state_dir), url or ""],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_a_run_whose_process_died_becomes_interrupted(
    tmp_path: Path, store_url: str | None, store: Store
) -> None:
    dead_run = _run_in_dead_process(tmp_path, store_url)

    assert store.recover_interrupted() == [dead_run]

    assert store.get_run(dead_run).state is RunState.INTERRUPTED
    states = {job.job_id: job.state for job in store.get_jobs(dead_run)}
    assert states == {
        "build": JobState.INTERRUPTED,
        "test": JobState.INTERRUPTED,
        "lint": JobState.SKIPPED,  # already finished: left alone
    }
    assert store.get_job(dead_run, "test").reason == "the conveyor process died"
    recovery = [e for e in store.events(run_id=dead_run) if e.actor == "conveyor"]
    assert [(e.kind, e.job_id, e.state) for e in recovery] == [
        (EventKind.JOB_STATE, "build", "interrupted"),
        (EventKind.JOB_STATE, "test", "interrupted"),
        (EventKind.RUN_STATE, None, "interrupted"),
        (EventKind.LOCK_RELEASED, "build", "released"),
    ]
    assert all(e.data["reason"] == "the conveyor process died" for e in recovery)


def test_recovery_releases_the_dead_runs_lock_tickets(
    tmp_path: Path, store_url: str | None, store: Store
) -> None:
    dead_run = _run_in_dead_process(tmp_path, store_url)
    store.recover_interrupted()

    mine = store.create_run(NewRun("ci"), [NewJob("deploy", "deploy")])
    ticket = store.lock_enqueue("deploy", mine, "deploy", supersede=False)

    assert ticket.state is LockState.HOLDING
    released = [e for e in store.events(run_id=dead_run) if e.kind == EventKind.LOCK_RELEASED]
    assert [e.data["reason"] for e in released] == ["the conveyor process died"]


def test_a_run_of_a_live_process_is_left_running(store: Store) -> None:
    live_run = store.create_run(NewRun("ci"), [NewJob("build", "build")])
    store.set_job_state(live_run, "build", JobState.RUNNING)

    assert store.recover_interrupted() == []

    assert store.get_run(live_run).state is RunState.RUNNING
    assert store.get_job(live_run, "build").state is JobState.RUNNING


def test_recovery_happens_once(tmp_path: Path, store_url: str | None, store: Store) -> None:
    dead_run = _run_in_dead_process(tmp_path, store_url)
    assert store.recover_interrupted() == [dead_run]
    events_after_first = store.events()

    assert store.recover_interrupted() == []
    assert store.events() == events_after_first
