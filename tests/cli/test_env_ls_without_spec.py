"""`conveyor env ls` in a folder without conveyor.yml fails without creating anything
(it used to create .conveyor/ and its database before failing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli


def test_env_ls_without_a_spec_fails_and_creates_nothing(tmp_path: Path) -> None:
    result = run_cli(["env", "ls"], tmp_path)

    assert result.exit_code == 2
    assert "no conveyor.yml" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [
        ["env", "status", "staging"],
        ["env", "history", "staging"],
        ["rollback", "staging"],
        ["audit", "verify"],
        ["approvals", "ls"],
        ["release", "status", "staging"],
    ],
    ids=" ".join,
)
def test_commands_that_open_the_store_create_nothing_without_a_spec(
    tmp_path: Path, command: list[str]
) -> None:
    result = run_cli(command, tmp_path)

    assert result.exit_code == 2
    assert "no conveyor.yml" in result.stderr
    assert list(tmp_path.iterdir()) == []
