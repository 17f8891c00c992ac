"""Whole runs through `execute_run`: timeouts, retries, cancellation, secrets, outputs."""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import (
    CliProcess,
    GitProject,
    MakeProject,
    kill_quietly,
    process_alive,
    read_pid,
    run_cli,
    wait_until,
)
from conveyor.errors import ConveyorError
from conveyor.states import FailureClass, JobState, RunState


@pytest.fixture
def pidfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """$PIDFILE for a job to write a background process id to; that process is killed
    at teardown should the test fail before the engine did it."""
    path = tmp_path / "job.pid"
    monkeypatch.setenv("PIDFILE", str(path))
    yield path
    if path.exists() and path.read_text().strip():
        kill_quietly(int(path.read_text()))


def stored_log(project: GitProject, run_id: int, job_id: str) -> str:
    with project.store() as store:
        blob = store.get_job(run_id, job_id).log_blob
        assert blob is not None
        return store.blobs.get_bytes(blob).decode()


# --- timeouts ---------------------------------------------------------------------


def test_timeout_fails_the_job_and_kills_its_background_processes(
    git_project: MakeProject, pidfile: Path
) -> None:
    project = git_project(
        """\
        version: 1
        jobs:
          hang:
            timeout: 1s
            run: |
              sleep 300 &
              echo $! > "$PIDFILE"
              wait
        """
    )

    outcome = project.run()

    assert outcome.state is RunState.FAILED
    job = project.jobs(outcome.run_id)["hang"]
    assert (job.state, job.failure) == (JobState.FAILED, FailureClass.TIMEOUT)
    assert job.detail == "timed out after 1s"
    grandchild = read_pid(pidfile)
    wait_until(lambda: not process_alive(grandchild), "the background sleep to be killed")


# --- retries ----------------------------------------------------------------------

RETRY_SPEC = """\
version: 1
jobs:
  flaky:
    retry: 1
    run: |
      echo attempt >> "$ATTEMPTS/flaky"
      [ "$(wc -l < "$ATTEMPTS/flaky")" -ge 2 ] || exit 1
  timeouts-only:
    retry: {max: 2, on: [timeout]}
    run: |
      echo attempt >> "$ATTEMPTS/timeouts-only"
      exit 1
  exit-three:
    retry: {max: 2, exit_codes: [3]}
    run: |
      echo attempt >> "$ATTEMPTS/exit-three"
      [ "$(wc -l < "$ATTEMPTS/exit-three")" -ge 2 ] || exit 3
  exit-four:
    retry: {max: 2, exit_codes: [3]}
    run: |
      echo attempt >> "$ATTEMPTS/exit-four"
      exit 4
  slow-once:
    timeout: 1s
    retry: {max: 1, on: [timeout]}
    run: |
      echo attempt >> "$ATTEMPTS/slow-once"
      [ "$(wc -l < "$ATTEMPTS/slow-once")" -ge 2 ] || sleep 300
"""


def test_retries_follow_the_failure_class_and_exit_codes(
    git_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    monkeypatch.setenv("ATTEMPTS", str(attempts))
    project = git_project(RETRY_SPEC)

    outcome = project.run(parallelism=5)

    jobs = project.jobs(outcome.run_id)
    summary = {
        job_id: (job.state, job.attempts, job.exit_code, job.failure)
        for job_id, job in jobs.items()
    }
    assert summary == {
        "flaky": (JobState.SUCCESS, 2, 0, None),
        "timeouts-only": (JobState.FAILED, 1, 1, FailureClass.EXIT_CODE),
        "exit-three": (JobState.SUCCESS, 2, 0, None),
        "exit-four": (JobState.FAILED, 1, 4, FailureClass.EXIT_CODE),
        "slow-once": (JobState.SUCCESS, 2, 0, None),
    }
    recorded = {path.name: len(path.read_text().splitlines()) for path in attempts.iterdir()}
    assert recorded == {k: v[1] for k, v in summary.items()}
    assert "attempt 1 failed (exited with code 1); retrying: attempt 2 of 2" in stored_log(
        project, outcome.run_id, "flaky"
    )


def test_default_retry_applies_to_jobs_without_their_own(
    git_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTEMPTS", str(tmp_path))
    project = git_project(
        """\
        version: 1
        defaults:
          retry: 2
        jobs:
          flaky:
            run: |
              echo attempt >> "$ATTEMPTS/flaky"
              [ "$(wc -l < "$ATTEMPTS/flaky")" -ge 3 ] || exit 1
        """
    )

    outcome = project.run()

    assert outcome.state is RunState.SUCCESS
    assert project.jobs(outcome.run_id)["flaky"].attempts == 3


# --- cancellation -------------------------------------------------------------------

LONG_JOB_SPEC = """\
version: 1
jobs:
  quick:
    run: "true"
  long:
    needs: [quick]
    run: |
      sleep 300 &
      echo $! > "$PIDFILE"
      wait
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_cancels_the_run_and_ends_its_processes(
    git_project: MakeProject,
    start_cli: Callable[..., CliProcess],
    pidfile: Path,
    signum: signal.Signals,
) -> None:
    project = git_project(LONG_JOB_SPEC)
    process = start_cli(["run", "-q"], project.root, {"PIDFILE": str(pidfile)})
    grandchild = read_pid(pidfile)

    process.popen.send_signal(signum)

    assert process.finish() == 130
    status = run_cli(["status", "-o", "json"], project.root).json()
    assert status["run"]["state"] == RunState.CANCELLED
    states = {job["job_id"]: job["state"] for job in status["jobs"]}
    assert states == {"quick": JobState.SUCCESS, "long": JobState.CANCELLED}
    assert project.run_record(1).state is RunState.CANCELLED
    wait_until(lambda: not process_alive(grandchild), "the job's sleep to end")


# --- secrets --------------------------------------------------------------------------

SECRET = 's3cr3t/T0k"en+v@lue'
SECRET_SPEC = """\
version: 1
jobs:
  leaky:
    secrets: [API_TOKEN]
    run:
      - echo "raw $API_TOKEN"
      - printf '%s' "$API_TOKEN" | base64
      - python3 -c 'import os, urllib.parse as u; print(u.quote(os.environ["API_TOKEN"], safe=""))'
      - python3 -c 'import os, json; print(json.dumps(dict(token=os.environ["API_TOKEN"])))'
"""


def test_secrets_are_masked_in_stored_logs_in_every_encoding(
    git_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", SECRET)
    project = git_project(SECRET_SPEC)

    outcome = project.run()

    assert outcome.state is RunState.SUCCESS
    log = stored_log(project, outcome.run_id, "leaky")
    encodings = {
        "raw": SECRET,
        "base64": base64.b64encode(SECRET.encode()).decode(),
        "url": quote(SECRET, safe=""),
        "json": json.dumps(SECRET)[1:-1],
    }
    assert len(set(encodings.values())) == 4
    for form, encoded in encodings.items():
        assert encoded not in log, form
    assert "raw ***" in log
    assert '{"token": "***"}' in log
    assert log.count("***") == 4
    live_file = project.project().run_dir(outcome.run_id) / "logs" / "leaky.log"
    assert SECRET not in live_file.read_text()


def test_a_missing_secret_is_a_user_error_before_the_run_starts(
    git_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_TOKEN", raising=False)
    project = git_project(SECRET_SPEC)

    with pytest.raises(ConveyorError, match="secret 'API_TOKEN' needed by job 'leaky'"):
        project.run()


# --- outputs --------------------------------------------------------------------------


def test_outputs_reach_dependants_and_missing_outputs_fail_the_job(
    git_project: MakeProject,
) -> None:
    project = git_project(
        """\
        version: 1
        jobs:
          build:
            outputs: ["dist/**"]
            run:
              - mkdir -p dist
              - echo "built from $(cat version.txt)" > dist/app.txt
          consume:
            needs: [build]
            run: cat dist/app.txt
          forgetful:
            outputs: [report.xml]
            run: "true"
        """,
        {"version.txt": "v1\n"},
    )

    outcome = project.run()

    assert outcome.state is RunState.FAILED
    jobs = project.jobs(outcome.run_id)
    assert jobs["build"].outputs_blob is not None
    assert jobs["consume"].state is JobState.SUCCESS
    assert "built from v1" in stored_log(project, outcome.run_id, "consume")
    assert jobs["forgetful"].state is JobState.FAILED
    assert jobs["forgetful"].detail == "outputs: 'report.xml' matched no file"


# --- changes since the last successful run ---------------------------------------------


def test_changes_are_counted_since_the_last_successful_run(git_project: MakeProject) -> None:
    project = git_project(
        """\
        version: 1
        jobs:
          backend:
            if: {changes: ["src/**"]}
            run: "true"
          docs:
            if: {changes: ["docs/**"]}
            run: "true"
        """,
        {"src/app.py": "v1\n", "docs/index.md": "v1\n"},
    )
    first = project.run()
    project.commit({"docs/index.md": "v2\n"})
    project.commit({"docs/more.md": "v2\n"})

    second = project.run()

    assert first.jobs == {"backend": JobState.SUCCESS, "docs": JobState.SUCCESS}
    assert second.jobs == {"backend": JobState.SKIPPED, "docs": JobState.SUCCESS}
    assert project.jobs(second.run_id)["docs"].reason == "if: docs/index.md (+1 more) changed"
