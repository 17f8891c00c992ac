import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.errors import InfrastructureError, NotFoundError
from conveyor.states import FailureClass, JobState, RunState
from conveyor.store import EventKind, NewJob, NewRun, Store


@pytest.fixture
def store(tmp_path: Path, store_url: str | None) -> Iterator[Store]:
    with Store(tmp_path / "state", store_url) as opened:
        yield opened


def _plan() -> list[NewJob]:
    # Not alphabetical, so planned order is distinguishable from sorting.
    return [
        NewJob("lint", "lint"),
        NewJob("build", "build", plan_status="run", reason="files changed"),
        NewJob("test[py=3.12]", "test", needs=["build"], matrix={"py": "3.12"}),
    ]


def _new_run(store: Store, *, pipeline: str = "ci", branch: str = "main") -> int:
    return store.create_run(NewRun(pipeline, commit_sha="abc123", branch=branch), _plan())


def test_create_run_records_the_run_its_jobs_and_their_events(store: Store) -> None:
    run_id = store.create_run(
        NewRun(
            pipeline="ci",
            commit_sha="abc123",
            branch="main",
            author="ada",
            actor="ada",
            trigger={"rerun_of": 3},
            parallelism=4,
            workspace="/tmp/ws",
        ),
        _plan(),
    )

    run = store.get_run(run_id)
    assert run.state is RunState.RUNNING
    assert (run.pipeline, run.commit_sha, run.branch, run.author) == ("ci", "abc123", "main", "ada")
    assert run.trigger == {"rerun_of": 3}
    assert (run.parallelism, run.workspace) == (4, "/tmp/ws")
    assert (run.pid, run.host) == (os.getpid(), socket.gethostname())
    assert run.finished_at is None

    jobs = store.get_jobs(run_id)
    assert [job.job_id for job in jobs] == ["lint", "build", "test[py=3.12]"]
    assert [job.ordinal for job in jobs] == [0, 1, 2]
    assert all(job.state is JobState.PENDING and job.attempts == 0 for job in jobs)
    test_job = store.get_job(run_id, "test[py=3.12]")
    assert (test_job.name, test_job.needs, test_job.matrix) == ("test", ("build",), {"py": "3.12"})
    build = store.get_job(run_id, "build")
    assert (build.plan_status, build.reason) == ("run", "files changed")

    log = store.events(run_id=run_id)
    assert [event.kind for event in log] == [EventKind.RUN_CREATED] + [EventKind.JOB_PLANNED] * 3
    assert [event.job_id for event in log[1:]] == ["lint", "build", "test[py=3.12]"]
    assert all(event.commit_sha == "abc123" for event in log)


def test_job_transitions_update_the_projection_and_append_events_in_order(store: Store) -> None:
    run_id = _new_run(store)

    store.set_job_state(run_id, "build", JobState.RUNNING, attempts=1)
    store.set_job_state(run_id, "build", JobState.RUNNING, attempts=2)  # a retry
    store.set_job_state(
        run_id,
        "build",
        JobState.FAILED,
        exit_code=3,
        failure=FailureClass.EXIT_CODE,
        detail="exit 3",
        log_blob="sha256:" + "a" * 64,
    )

    build = store.get_job(run_id, "build")
    assert build.state is JobState.FAILED
    assert (build.attempts, build.exit_code, build.failure) == (2, 3, FailureClass.EXIT_CODE)
    assert (build.detail, build.log_blob) == ("exit 3", "sha256:" + "a" * 64)
    assert build.started_at is not None
    assert build.finished_at is not None
    assert build.finished_at >= build.started_at

    job_events = [e for e in store.events(run_id=run_id) if e.kind == EventKind.JOB_STATE]
    assert [(e.job_id, e.state, e.data["from"]) for e in job_events] == [
        ("build", "running", "pending"),
        ("build", "running", "running"),
        ("build", "failed", "running"),
    ]
    assert job_events[2].data["exit_code"] == 3
    assert job_events[2].data["failure"] == "exit_code"


def test_an_illegal_transition_is_refused_and_changes_nothing(store: Store) -> None:
    run_id = _new_run(store)
    before = store.events()

    with pytest.raises(InfrastructureError, match="cannot go from pending to success"):
        store.set_job_state(run_id, "lint", JobState.SUCCESS)

    assert store.get_job(run_id, "lint").state is JobState.PENDING
    assert store.events() == before


def test_unknown_job_fields_are_refused(store: Store) -> None:
    run_id = _new_run(store)
    with pytest.raises(InfrastructureError, match="colour"):
        store.set_job_state(run_id, "lint", JobState.RUNNING, colour="red")
    assert store.get_job(run_id, "lint").state is JobState.PENDING


def test_events_are_only_ever_appended(store: Store) -> None:
    run_id = _new_run(store)
    first = store.events()[0]
    counts = [len(store.events())]

    store.set_job_state(run_id, "lint", JobState.RUNNING)
    counts.append(len(store.events()))
    store.set_job_state(run_id, "lint", JobState.SUCCESS)
    counts.append(len(store.events()))
    store.set_run_state(run_id, RunState.SUCCESS)
    counts.append(len(store.events()))

    assert counts == [4, 5, 6, 7]
    assert store.events()[0] == first
    ids = [event.id for event in store.events()]
    assert ids == sorted(ids)


def test_events_can_be_read_incrementally(store: Store) -> None:
    first_run = _new_run(store)
    second_run = _new_run(store)
    everything = store.events()

    assert store.events(after_id=everything[2].id) == everything[3:]
    assert store.events(limit=2) == everything[:2]
    assert {event.run_id for event in store.events(run_id=second_run)} == {second_run}
    assert len(store.events(run_id=first_run)) == 4


def test_finishing_a_run_sets_finished_at_and_records_actor_and_data(store: Store) -> None:
    run_id = _new_run(store)

    store.set_run_state(run_id, RunState.CANCELLED, actor="ada", reason="Ctrl-C")

    run = store.get_run(run_id)
    assert run.state is RunState.CANCELLED
    assert run.finished_at is not None
    last = store.events(run_id=run_id)[-1]
    assert (last.kind, last.state, last.actor) == (EventKind.RUN_STATE, "cancelled", "ada")
    assert last.data["reason"] == "Ctrl-C"
    with pytest.raises(InfrastructureError, match="already ended"):
        store.set_run_state(run_id, RunState.SUCCESS)


def test_missing_runs_and_jobs_raise_not_found_with_a_hint(store: Store) -> None:
    run_id = _new_run(store)

    with pytest.raises(NotFoundError) as missing_run:
        store.get_run(999)
    assert missing_run.value.hint is not None
    assert "conveyor history" in missing_run.value.hint

    with pytest.raises(NotFoundError) as missing_job:
        store.get_job(run_id, "deploy")
    assert missing_job.value.hint is not None
    assert "lint, build, test[py=3.12]" in missing_job.value.hint


def test_list_runs_is_newest_first_and_filters(store: Store) -> None:
    main_ok = _new_run(store)
    store.set_run_state(main_ok, RunState.SUCCESS)
    feature = _new_run(store, branch="feature")
    nightly = _new_run(store, pipeline="nightly")

    assert [run.id for run in store.list_runs()] == [nightly, feature, main_ok]
    assert [run.id for run in store.list_runs(2)] == [nightly, feature]
    assert [run.id for run in store.list_runs(pipeline="ci")] == [feature, main_ok]
    assert [run.id for run in store.list_runs(branch="main")] == [nightly, main_ok]
    assert [run.id for run in store.list_runs(state=RunState.SUCCESS)] == [main_ok]
    latest_ci = store.latest_run("ci")
    latest_any = store.latest_run()
    assert latest_ci is not None
    assert latest_any is not None
    assert (latest_ci.id, latest_any.id) == (feature, nightly)


def test_latest_run_of_an_empty_store_is_none(store: Store) -> None:
    assert store.latest_run() is None
    assert store.list_runs() == []


def test_last_successful_run_is_per_pipeline_and_branch(store: Store) -> None:
    old_main = _new_run(store)
    store.set_run_state(old_main, RunState.SUCCESS)
    new_main = _new_run(store)
    store.set_run_state(new_main, RunState.SUCCESS)
    failed_main = _new_run(store)
    store.set_run_state(failed_main, RunState.FAILED)
    feature = _new_run(store, branch="feature")
    store.set_run_state(feature, RunState.SUCCESS)

    on_main = store.last_successful_run("ci", "main")
    on_any_branch = store.last_successful_run("ci", None)
    assert on_main is not None
    assert on_any_branch is not None
    assert on_main.id == new_main
    assert on_any_branch.id == feature
    assert store.last_successful_run("ci", "release") is None
    assert store.last_successful_run("nightly", "main") is None
