"""A `conveyor run` killed with SIGKILL is found by the next command and resumed by the cache."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import CliProcess, MakeProject, process_alive, read_pid, run_cli, wait_until
from conveyor.states import JobState, RunState

# `slow` sleeps only while $SLOW is set: the environment is not part of the cache key,
# so the rerun of the same commit finishes quickly.
SPEC = """\
version: 1
jobs:
  fetch:
    outputs: [fetched.txt]
    run: echo fetched > fetched.txt
  compile:
    run: echo compiled
  slow:
    needs: [fetch, compile]
    concurrency: production  # the dead run's place in the queue must be freed
    run: |
      if [ -n "$SLOW" ]; then echo $$ > "$PIDFILE"; sleep 300; fi
      cat fetched.txt
  report:
    needs: [slow]
    run: echo done
"""


@pytest.fixture
def pidfile(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "slow.pid"
    yield path
    # The job runs in a session of its own, so SIGKILL to conveyor's group leaves it.
    if path.exists() and path.read_text().strip():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(path.read_text()), signal.SIGKILL)  # the job leads its group


def status_json(cwd: Path) -> Any:
    result = run_cli(["status", "-o", "json"], cwd)
    assert result.exit_code == 0, result.stderr
    return result.json()


def job_states(status: Any) -> dict[str, str]:
    return {job["job_id"]: job["state"] for job in status["jobs"]}


def test_a_killed_run_is_interrupted_and_the_next_run_reuses_finished_jobs(
    git_project: MakeProject, start_cli: Callable[..., CliProcess], pidfile: Path
) -> None:
    project = git_project(SPEC)
    process = start_cli(["run", "-q"], project.root, {"SLOW": "1", "PIDFILE": str(pidfile)})
    orphan = read_pid(pidfile)
    wait_until(
        lambda: (
            job_states(status_json(project.root))
            == {"fetch": "success", "compile": "success", "slow": "running", "report": "pending"}
        ),
        "fetch and compile to succeed while slow runs",
    )

    process.kill_group()
    process.finish()
    assert process_alive(orphan), "the job runs in its own session: SIGKILL of conveyor leaves it"

    status = status_json(project.root)
    wait_until(lambda: not process_alive(orphan), "the next command to end the orphaned job")
    assert status["run"]["id"] == 1
    assert status["run"]["state"] == RunState.INTERRUPTED
    assert job_states(status) == {
        "fetch": JobState.SUCCESS,
        "compile": JobState.SUCCESS,
        "slow": JobState.INTERRUPTED,
        "report": JobState.INTERRUPTED,
    }

    rerun = run_cli(["run", "-q"], project.root)

    assert rerun.exit_code == 0, rerun.stdout + rerun.stderr
    status = status_json(project.root)
    assert (status["run"]["id"], status["run"]["state"]) == (2, RunState.SUCCESS)
    assert job_states(status) == {
        "fetch": JobState.CACHED,
        "compile": JobState.CACHED,
        "slow": JobState.SUCCESS,
        "report": JobState.SUCCESS,
    }
