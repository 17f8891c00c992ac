"""A job's secrets stay out of everything Conveyor stores or prints, not only its log
(issue 12): a secret inside a failing test's assertion message (split over two lines, and
base64 wrapped at 76 columns) is looked for in the CLI's output and in every file of the
state folder (the SQLite database and its WAL, the blob store, the log files).
Environment secrets: tests/deploy/test_environment_secrets.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import GitProject, MakeProject, run_cli
from conveyor.states import JobState, RunState
from leaks import files_holding, holding

JOB_SECRET = "api_Q7wE9rT2yU4iO6pA8sD0fG"
ENV_SECRET = "shop_Z1xC3vB5nM7kJ9hG2fD4sA"  # an environment's: no job declares it
# A secret spelled out over two lines, and base64 wrapped at 76 columns (3 lines).
FAILING_TEST = """\
import base64
import os


def test_the_token_is_refused():
    token = os.environ["API_TOKEN"]
    wrapped = base64.encodebytes(("user:" + token * 4).encode()).decode()
    assert token == "", "bad token " + token[:10] + "\\n" + token[10:] + "\\n" + wrapped
"""
RUN_SPEC = """\
version: 1
jobs:
  unit:
    uses: test
    secrets: [API_TOKEN]
    with: {coverage: false, rerun_failures: 0}
  peek:
    run:
      - echo "API_TOKEN=${API_TOKEN:-unset} SHOP_TOKEN=${SHOP_TOKEN:-unset}"
environments:
  staging:
    secrets: [SHOP_TOKEN]
"""


@pytest.fixture
def secret_run(git_project: MakeProject, monkeypatch: pytest.MonkeyPatch) -> tuple[GitProject, int]:
    monkeypatch.setenv("API_TOKEN", JOB_SECRET)
    monkeypatch.setenv("SHOP_TOKEN", ENV_SECRET)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    project = git_project(RUN_SPEC, files={"tests/test_token.py": FAILING_TEST})
    outcome = project.run()
    assert outcome.state is RunState.FAILED
    assert project.jobs(outcome.run_id)["unit"].state is JobState.FAILED
    return project, outcome.run_id


def test_a_failing_assertion_holding_a_job_secret_is_masked_in_everything_shown_or_stored(
    secret_run: tuple[GitProject, int],
) -> None:
    project, run_id = secret_run
    shown = [
        run_cli(["status", str(run_id), "-o", "json"], project.root),
        run_cli(["logs", str(run_id), "unit"], project.root),
        run_cli(["report", str(run_id)], project.root),
        run_cli(["report", str(run_id), "-o", "json"], project.root),
        run_cli(["report", str(run_id), "-o", "sarif"], project.root),
    ]
    assert all(result.exit_code == 0 for result in shown), [r.stderr for r in shown]
    with project.store() as store:
        events = [str(event.data) for event in store.events(run_id=run_id)]
        reports = {r.kind: store.blobs.get_bytes(r.digest).decode() for r in store.reports(run_id)}
    assert "tests" in reports
    assert "***" in reports["tests"]  # the assertion message was there, masked

    assert holding(JOB_SECRET, *[r.stdout + r.stderr for r in shown]) == []
    assert holding(JOB_SECRET, *events) == []
    assert holding(JOB_SECRET, *reports.values()) == []
    assert files_holding(JOB_SECRET, project.project().state_dir) == []


def test_a_job_sees_only_the_secrets_it_declares(secret_run: tuple[GitProject, int]) -> None:
    project, run_id = secret_run
    with project.store() as store:
        blob = store.get_job(run_id, "peek").log_blob
        assert blob is not None
        log = store.blobs.get_bytes(blob).decode()

    # Both are in conveyor's own environment; neither is declared by `peek`.
    assert "API_TOKEN=unset SHOP_TOKEN=unset" in log


STAGING_VALUE = "Kp4Lm6Nq8Rs0Tu2Vw_stg"
PRODUCTION_VALUE = "Xa3Yb5Zc7Dd9Ee1Ff_prd"
SCOPED_SPEC = """\
version: 1
jobs:
  e2e:
    # As a test job might, printing what a replica answered (it cannot read the values).
    run: |
      echo "replicas said $(cat answers.txt)"
      echo "scoped variable: ${CONVEYOR_SECRET_PRODUCTION_DB_URL:-none}"
environments:
  staging:
    secrets: [DB_URL]
  production:
    secrets: [DB_URL, NOT_SET_HERE]
"""


def test_every_environments_values_are_masked_in_a_run_though_no_deploy_needs_them(
    git_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_SECRET_PRODUCTION_DB_URL", PRODUCTION_VALUE)
    answers = f"{STAGING_VALUE} {PRODUCTION_VALUE}\n"
    project = git_project(SCOPED_SPEC, files={"answers.txt": answers})
    scoped = project.root / ".conveyor" / "secrets" / "staging.env"
    scoped.parent.mkdir(parents=True, exist_ok=True)
    scoped.write_text(f"DB_URL={STAGING_VALUE}\n")
    scoped.chmod(0o600)

    outcome = project.run()  # production's NOT_SET_HERE is missing: only a deploy needs it
    shown = run_cli(["logs", str(outcome.run_id), "e2e"], project.root)

    assert outcome.state is RunState.SUCCESS
    assert "replicas said *** ***\n" in shown.stdout
    assert "scoped variable: none\n" in shown.stdout  # jobs never inherit one
    for value in (STAGING_VALUE, PRODUCTION_VALUE):
        assert holding(value, shown.stdout + shown.stderr) == []
        written = files_holding(value, project.root / ".conveyor")
        assert written == (["secrets/staging.env"] if value == STAGING_VALUE else [])
