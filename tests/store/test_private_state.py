"""The state folder is its owner's: 0700, its database and logs 0600, its blobs 0400;
a folder found open to others is tightened. Modes are read with os.stat after real runs
and commands, not from the code that sets them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from conftest import MakeProject, run_cli
from conveyor.states import RunState

SPEC = """\
version: 1
jobs:
  hello:
    run: echo "hello from a job"
"""
OTHERS = 0o077


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_run_leaves_nothing_others_may_read(git_project: MakeProject) -> None:
    project = git_project(SPEC)

    outcome = project.run()

    assert outcome.state is RunState.SUCCESS
    state = project.project().state_dir
    assert mode(state) == 0o700
    assert mode(state / "conveyor.db") == 0o600
    for companion in (state / "conveyor.db-wal", state / "conveyor.db-shm"):
        assert not companion.exists() or mode(companion) == 0o600
    logs = list((project.project().run_dir(outcome.run_id) / "logs").glob("*.log"))
    assert logs and {mode(log) for log in logs} == {0o600}
    blobs = [path for path in (state / "blobs").rglob("*") if path.is_file()]
    folders = [state / "blobs", *(path for path in (state / "blobs").rglob("*") if path.is_dir())]
    assert blobs and {mode(blob) for blob in blobs} == {0o400}
    assert {mode(folder) for folder in folders} == {0o700}


def test_a_state_folder_open_to_others_is_tightened(git_project: MakeProject) -> None:
    project = git_project(SPEC)
    project.run()
    state = project.project().state_dir
    state.chmod(0o755)
    (state / "conveyor.db").chmod(0o644)

    listed = run_cli(["approvals", "ls"], project.root)

    assert listed.exit_code == 0, listed.stderr
    assert mode(state) == 0o700
    assert mode(state / "conveyor.db") == 0o600


def test_the_first_command_creates_the_state_folder_private(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(SPEC)

    added = run_cli(
        ["users", "add", "bob", "--email", "bob@example.org", "--role", "reviewer"], tmp_path
    )

    assert added.exit_code == 0, added.stderr
    assert mode(tmp_path / ".conveyor") == 0o700
    assert mode(tmp_path / ".conveyor" / "users.yml") == 0o600
