"""`conveyor server` killed with SIGKILL mid-run and started again: the run is marked
interrupted, its queue entry runs again, the jobs that had finished come back cached."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from conftest import CliProcess, MakeProject, process_alive, wait_until
from conveyor.approvals.users import add_user, issue_token, users_path
from conveyor.states import JobState, RunState
from conveyor.store import queue
from conveyor.store.procs import ProcessIdentity, start_time
from servers import answers_health, free_port

SPEC = """\
version: 1
name: resumable
jobs:
  first:
    run: echo first > first.txt
    outputs: [first.txt]
  slow:
    needs: [first]
    run: sleep 2 && cat first.txt
"""


@pytest.mark.real
def test_a_killed_server_resumes_its_queue_and_reuses_finished_jobs(
    git_project: MakeProject, start_cli: Callable[..., CliProcess]
) -> None:
    project = git_project(SPEC)
    state = project.project().state_dir
    state.mkdir()
    add_user(users_path(state), "dev", "dev@example.org", ["developer"], [])
    token = issue_token(users_path(state), "dev", None, datetime.now(UTC)).token
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["server", "--port", str(port), "--workers", "1"]

    first_server = start_cli(args, project.root)
    wait_until(lambda: answers_health(url), "the server to answer")
    answer = httpx.post(f"{url}/api/v1/runs", json={}, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 202, answer.text
    queue_id = answer.json()["queue_id"]

    def slow_running() -> int | None:
        with project.store() as store:
            entry = queue.get(store.engine, queue_id)
        if entry is None or entry.run_id is None:
            return None
        jobs = project.jobs(entry.run_id)
        return entry.run_id if jobs["slow"].state is JobState.RUNNING else None

    killed_run = wait_until(slow_running, "the slow job to run")
    first_server.kill_group()
    first_server.popen.wait()
    with project.store() as store:
        orphan = queue.get(store.engine, queue_id)
    assert orphan is not None and orphan.state is queue.QueueState.CLAIMED

    second_server = start_cli(args, project.root)

    def finished() -> queue.QueuedRun | None:
        with project.store() as store:
            entry = queue.get(store.engine, queue_id)
        return entry if entry is not None and entry.state is queue.QueueState.DONE else None

    done = wait_until(finished, "the resumed run to finish")
    assert project.run_record(killed_run).state is RunState.INTERRUPTED
    assert done.run_id is not None and done.run_id != killed_run
    rerun = project.run_record(done.run_id)
    jobs = project.jobs(rerun.id)
    assert rerun.state is RunState.SUCCESS, done.reason
    assert jobs["first"].state is JobState.CACHED
    assert jobs["slow"].state is JobState.SUCCESS
    assert rerun.trigger["queue_id"] == queue_id
    second_server.popen.send_signal(signal.SIGINT)
    assert second_server.finish() == 0
    assert "1 queued run resumed" in second_server.outputs[0]


def test_an_entry_whose_owner_is_a_zombie_is_queued_again(git_project: MakeProject) -> None:
    """A run's process killed with the server's process group stays a zombie until init
    collects it: it is dead, and its entry is queued again at once."""
    project = git_project(SPEC)
    with project.store() as store:
        queue_id = queue.enqueue(
            store.engine,
            queue.NewQueued(str(project.root), "0" * 40, "main", {"kind": "api"}, "dev", {}),
        )
        exited = subprocess.Popen(["true"])  # never waited for: a zombie
        wait_until(lambda: not process_alive(exited.pid), "the child to exit")
        owner = ProcessIdentity(exited.pid, socket.gethostname(), start_time(exited.pid))
        assert queue.claim_next(store.engine, owner) is not None

        assert queue.requeue_orphans(store.engine, watched=[queue_id]) == []
        assert queue.requeue_orphans(store.engine) == [queue_id]
        exited.wait()
        entry = queue.get(store.engine, queue_id)
    assert entry is not None and entry.state is queue.QueueState.QUEUED
