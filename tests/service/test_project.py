"""The state folder keeps itself out of git, except the exceptions file (policy)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conveyor.service.project import Project


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def test_state_folder_is_ignored_but_exceptions_file_is_not(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    project = Project.locate(tmp_path / "conveyor.yml")
    project.ensure_state_dir()
    (project.state_dir / "conveyor.db").write_text("state")
    (project.state_dir / "secrets.env").write_text("TOKEN=x")
    (project.state_dir / "exceptions.yml").write_text("exceptions: []\n")

    untracked = _git(tmp_path, "status", "--porcelain", "--untracked-files=all").split()

    assert ".conveyor/exceptions.yml" in untracked
    assert not any(p.endswith(("conveyor.db", "secrets.env", ".gitignore")) for p in untracked)
