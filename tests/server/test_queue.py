"""The run queue through the API, on a real server: trigger, the queue, cancel, rerun the
failed jobs; runs of commits that are not HEAD, from any repository holding them."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import GIT_ENV, MakeProject, wait_until
from conveyor.server.app import create_app
from conveyor.server.context import ServerContext
from conveyor.states import JobState, RunState
from conveyor.store import queue
from conveyor.store.records import EventKind
from server.conftest import MakeServer, ServerUnderTest, serving

SLOW = """\
version: 1
name: slow
jobs:
  first:
    run: echo first
  slow:
    needs: [first]
    run: sleep 30
"""


def trigger(served: ServerUnderTest, user: str = "developer", **body: Any) -> dict[str, Any]:
    answer = served.client.post("/api/v1/runs", json=body, headers=served.as_user(user))
    assert answer.status_code == 202, answer.text
    found: dict[str, Any] = answer.json()
    return found


def entry(served: ServerUnderTest, queue_id: int) -> dict[str, Any]:
    answer = served.client.get(f"/api/v1/queue/{queue_id}", headers=served.as_user("viewer"))
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def until_finished(served: ServerUnderTest, queue_id: int) -> dict[str, Any]:
    found: dict[str, Any] = wait_until(
        lambda: (e := entry(served, queue_id))["state"] in ("done", "cancelled") and e,
        f"queued run {queue_id} to finish",
    )
    return found


def until_job(served: ServerUnderTest, queue_id: int, job: str, state: JobState) -> int:
    """The entry's run id, once its `job` is in `state`."""

    def reached() -> int | None:
        run_id = entry(served, queue_id)["run_id"]
        if run_id is None:
            return None
        jobs = served.project.jobs(run_id)
        return run_id if job in jobs and jobs[job].state is state else None

    found: int = wait_until(reached, f"{job} {state.value} in queued run {queue_id}")
    return found


def test_a_triggered_run_runs_head_with_its_trigger_and_actor(served: ServerUnderTest) -> None:
    answer = trigger(served)
    assert answer["state"] == "queued" and answer["run_id"] is None

    done = until_finished(served, answer["queue_id"])

    assert done["state"] == "done", done
    run = served.project.run_record(done["run_id"])
    assert run.state is RunState.SUCCESS
    assert run.commit_sha == served.project.git("rev-parse", "HEAD")
    assert run.branch == "main"
    assert run.actor == "developer"
    assert run.trigger == {"kind": "api", "queue_id": answer["queue_id"]}
    assert done["reason"] == f"run {run.id} success"
    with served.project.store() as store:
        kinds = [e.kind for e in store.events()]
    assert EventKind.RUN_QUEUED in kinds and EventKind.RUN_DEQUEUED in kinds


def test_without_the_role_nothing_is_queued(served: ServerUnderTest) -> None:
    anonymous = served.client.post("/api/v1/runs", json={})
    viewer = served.client.post("/api/v1/runs", json={}, headers=served.as_user("viewer"))
    reviewer = served.client.post("/api/v1/runs/1/rerun-failed", headers=served.as_user("reviewer"))

    assert (anonymous.status_code, viewer.status_code, reviewer.status_code) == (401, 403, 403)
    assert queue.get(served.context.store.engine, 1) is None
    assert served.client.get("/api/v1/queue").status_code == 401


def test_a_branch_or_a_tag_names_the_commit_to_run(make_server: MakeServer) -> None:
    served = make_server()
    served.project.git("checkout", "-q", "-b", "feature")
    feature = served.project.commit(message="on feature")
    served.project.git("tag", "v1")
    served.project.git("checkout", "-q", "main")

    by_branch = until_finished(served, trigger(served, commit="feature")["queue_id"])
    by_tag = until_finished(served, trigger(served, commit="v1")["queue_id"])

    assert (by_branch["commit"], by_branch["branch"]) == (feature, "feature")
    assert (by_tag["commit"], by_tag["branch"]) == (feature, None)
    tagged = served.project.run_record(by_tag["run_id"])
    assert (tagged.commit_sha, tagged.tag, tagged.state) == (feature, "v1", RunState.SUCCESS)


def test_an_unknown_commit_is_refused(served: ServerUnderTest) -> None:
    for commit in ("no-such-branch", "--output=/tmp/x"):
        answer = served.client.post(
            "/api/v1/runs", json={"commit": commit}, headers=served.as_user("developer")
        )
        assert answer.status_code == 400
        assert commit in answer.json()["reason"]
    assert queue.get(served.context.store.engine, 1) is None


def test_a_commit_from_a_mirror_runs_its_own_pipeline(
    make_server: MakeServer, tmp_path: Path
) -> None:
    """Webhooks queue commits fetched into a server-side mirror: the run is of that commit,
    with the pipeline file of that commit, whatever the checkout holds."""
    served = make_server()
    old = served.project.git("rev-parse", "HEAD")
    served.project.commit(
        {"conveyor.yml": "version: 1\nname: demo\njobs:\n  other:\n    run: 'true'\n"}
    )
    mirror = tmp_path / "mirror.git"
    subprocess.run(
        ["git", "clone", "-q", "--mirror", str(served.project.root), str(mirror)],
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    queued = queue.enqueue(
        served.context.store.engine,
        queue.NewQueued(
            repository=str(mirror),
            commit_sha=old,
            branch="feature",
            trigger={"kind": "push", "forge": "gitea"},
            actor="gitea",
            options={},
        ),
    )

    done = until_finished(served, queued)

    run = served.project.run_record(done["run_id"])
    assert (run.state, run.commit_sha, run.branch) == (RunState.SUCCESS, old, "feature")
    assert run.trigger == {"kind": "push", "forge": "gitea", "queue_id": queued}
    assert set(served.project.jobs(run.id)) == {"build", "test"}  # the old commit's jobs
    assert done["pipeline"] == "demo"


def test_a_broken_pipeline_file_ends_the_entry_with_the_reason(
    make_server: MakeServer,
) -> None:
    served = make_server()
    served.project.commit({"conveyor.yml": "version: 1\njobs:\n  a:\n    needs: [a]\n    run: x\n"})

    done = until_finished(served, trigger(served)["queue_id"])

    assert done["state"] == "done" and done["run_id"] is None
    assert done["reason"].startswith("not started: ")


def test_cancel_a_running_run_records_it_cancelled(make_server: MakeServer) -> None:
    served = make_server(SLOW)
    queued = trigger(served)["queue_id"]
    run_id = until_job(served, queued, "slow", JobState.RUNNING)
    # The run's process is a fork of the fork server, which imported the run path once:
    # no interpreter was started for it (its command line is the fork server's).
    pid = served.project.run_record(run_id).pid
    assert pid is not None and pid != os.getpid()
    assert b"multiprocessing.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()

    answer = served.client.post(
        f"/api/v1/runs/{run_id}/cancel", headers=served.as_user("developer")
    )

    assert answer.status_code == 202, answer.text
    done = until_finished(served, queued)
    assert served.project.run_record(run_id).state is RunState.CANCELLED
    assert served.project.jobs(run_id)["slow"].state is JobState.CANCELLED
    assert done["reason"] == f"run {run_id} cancelled"
    again = served.client.post(f"/api/v1/runs/{run_id}/cancel", headers=served.as_user("admin"))
    assert again.status_code == 409


def test_a_run_process_killed_alone_ends_its_entry_and_its_run(
    make_server: MakeServer,
) -> None:
    served = make_server(SLOW)
    queued = trigger(served)["queue_id"]
    run_id = until_job(served, queued, "slow", JobState.RUNNING)
    pid = served.project.run_record(run_id).pid
    assert pid is not None

    os.kill(pid, signal.SIGKILL)  # the OOM killer, say

    done = until_finished(served, queued)
    assert done["state"] == "done"
    assert done["reason"].endswith("(exit code -9)"), done["reason"]
    assert served.project.run_record(run_id).state is RunState.INTERRUPTED


def test_the_queue_lists_pages_and_cancels_a_waiting_entry(make_server: MakeServer) -> None:
    served = make_server(SLOW)  # two workers: the third entry waits
    ids = [trigger(served)["queue_id"] for _ in range(3)]
    for queue_id in ids[:2]:
        until_job(served, queue_id, "slow", JobState.RUNNING)
    viewer = served.as_user("viewer")

    first = served.client.get("/api/v1/queue?limit=2", headers=viewer).json()
    rest = served.client.get(
        f"/api/v1/queue?limit=2&cursor={first['next_cursor']}", headers=viewer
    ).json()

    assert [e["queue_id"] for e in first["items"]] == ids[:2]
    assert [e["state"] for e in first["items"]] == ["claimed", "claimed"]
    assert [e["queue_id"] for e in rest["items"]] == ids[2:]
    assert rest["next_cursor"] is None
    cancelled = served.client.post(
        f"/api/v1/queue/{ids[2]}/cancel", headers=served.as_user("developer")
    )
    assert cancelled.json() == {"queue_id": ids[2], "state": "cancelled"}
    assert entry(served, ids[2])["state"] == "cancelled"
    running = served.client.post(
        f"/api/v1/queue/{ids[0]}/cancel", headers=served.as_user("developer")
    )
    assert running.status_code == 202
    assert until_finished(served, ids[0])["reason"].endswith("cancelled")
    assert (
        served.client.post(
            f"/api/v1/queue/{ids[2]}/cancel", headers=served.as_user("developer")
        ).status_code
        == 409
    )


FLAKY = """\
version: 1
name: flaky
jobs:
  build:
    run: echo built > built.txt
    outputs: [built.txt]
  check:
    needs: [build]
    run: test -f "$FLAKY_MARKER"
"""


def test_rerun_failed_reruns_only_the_failed_jobs(
    make_server: MakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "marker"
    monkeypatch.setenv("FLAKY_MARKER", str(marker))
    served = make_server(FLAKY)
    failed = until_finished(served, trigger(served)["queue_id"])
    first = failed["run_id"]
    assert served.project.run_record(first).state is RunState.FAILED
    marker.touch()

    answer = served.client.post(
        f"/api/v1/runs/{first}/rerun-failed", headers=served.as_user("developer")
    )

    assert answer.status_code == 202, answer.text
    done = until_finished(served, answer.json()["queue_id"])
    rerun = served.project.run_record(done["run_id"])
    jobs = served.project.jobs(rerun.id)
    assert rerun.state is RunState.SUCCESS
    assert rerun.trigger["kind"] == "rerun-failed" and rerun.trigger["rerun_of"] == first
    assert jobs["build"].state is JobState.CACHED
    assert jobs["build"].detail == f"kept from run {first}"
    assert jobs["check"].state is JobState.SUCCESS


def test_rerun_failed_of_an_unknown_run_is_404(served: ServerUnderTest) -> None:
    answer = served.client.post("/api/v1/runs/99/rerun-failed", headers=served.as_user("admin"))
    assert answer.status_code == 404


def test_stopping_the_server_cancels_its_runs_as_ctrl_c_would(git_project: MakeProject) -> None:
    project = git_project(SLOW)
    context = ServerContext.open(project.project(), "http://placeholder")
    try:
        engine = context.store.engine
        head = project.git("rev-parse", "HEAD")
        queued = queue.enqueue(
            engine, queue.NewQueued(str(project.root), head, "main", {"kind": "api"}, "dev", {})
        )
        with serving(create_app(context)):

            def slow_running() -> int | None:
                entry = queue.get(engine, queued)
                if entry is None or entry.run_id is None:
                    return None
                slow = project.jobs(entry.run_id)["slow"]
                return entry.run_id if slow.state is JobState.RUNNING else None

            run_id = wait_until(slow_running, "the slow job to run")
        entry = queue.get(engine, queued)
    finally:
        context.close()
    assert entry is not None and entry.state is queue.QueueState.DONE
    assert entry.reason == f"run {run_id} cancelled"
    assert project.run_record(run_id).state is RunState.CANCELLED
