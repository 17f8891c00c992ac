"""A lone `test` job with `coverage: false` succeeds: the step does not expect the
coverage.json it was told not to write (its outputs said '.conveyor-out/**/coverage.json'
matched no file)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import MakeProject
from conveyor.states import JobState, RunState

SPEC = """\
version: 1
jobs:
  unit:
    uses: test
    with: {coverage: false, rerun_failures: 0}
"""
PASSING = "def test_one():\n    assert 1 + 1 == 2\n"


def test_a_lone_test_job_without_coverage_succeeds(
    git_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    project = git_project(SPEC, files={"tests/test_one.py": PASSING})

    outcome = project.run()

    unit = project.jobs(outcome.run_id)["unit"]
    assert outcome.state is RunState.SUCCESS, unit.detail
    assert unit.state is JobState.SUCCESS
