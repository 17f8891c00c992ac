"""Smoke commands find the tools the deploying job finds: on a stock Debian there is no
`python` on the system PATH, only in the virtualenv the pipeline runs with (found by a
`make demo` on a fresh Debian 12: the shop's smoke check exited 127)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.service import environments as envs
from conveyor.service.project import Project
from conveyor.states import DeployState
from deploy.apps import build_app, project_with_spec

SPEC = """\
version: 1
jobs:
  noop: {run: 'true'}
environments:
  staging:
    health:
      readiness: {path: /healthz, interval: 100ms}
      ready_timeout: 10s
    drain: 0.2s
    smoke:
      - name: a job's tool
        command: only-on-the-jobs-path
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = project_with_spec(tmp_path / "project", SPEC)
    try:
        yield project
    finally:
        with project.open_store() as store:
            envs.stop_environment(project, store, "staging")


def jobs_bin(tmp_path: Path) -> Path:
    """A folder only the job's PATH names, holding the tool the smoke check runs."""
    folder = tmp_path / "venv-bin"
    folder.mkdir()
    tool = folder / "only-on-the-jobs-path"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    return folder


@pytest.mark.real
def test_a_smoke_command_runs_with_the_deploying_jobs_path(
    project: Project, tmp_path: Path
) -> None:
    image = build_app(project, tmp_path, "v1")
    path = f"{jobs_bin(tmp_path)}{os.pathsep}{os.environ.get('PATH', os.defpath)}"

    with project.open_store() as store:
        outcome = envs.deploy(project, store, "staging", image, actor="ci", command_path=path)

    assert outcome.state is DeployState.SUCCEEDED, outcome.reason


@pytest.mark.real
def test_without_the_jobs_path_the_tool_is_not_found_and_the_deploy_rolls_back(
    project: Project, tmp_path: Path
) -> None:
    image = build_app(project, tmp_path, "v1")
    jobs_bin(tmp_path)

    with project.open_store() as store:
        outcome = envs.deploy(project, store, "staging", image, actor="ci")

    assert outcome.state is DeployState.ROLLED_BACK
    assert outcome.reason is not None and "code 127" in outcome.reason
