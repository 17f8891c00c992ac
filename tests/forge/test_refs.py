"""The branch check agrees with git's own `git check-ref-format --branch`."""

from __future__ import annotations

import subprocess

import pytest

from conveyor.forge.refs import branch_problem
from forge.test_parse import HOSTILE_BRANCHES

VALID = ["main", "feature/faster-cart", "release/1.2", "user/ada/fix_#12", "v1.0", "é-accent"]


@pytest.mark.parametrize("name", [*VALID, *HOSTILE_BRANCHES, "x.", "/lead", "a/.b", "HEAD"])
def test_branch_rules_match_git(name: str) -> None:
    as_ref = _git_accepts("check-ref-format", f"refs/heads/{name}")
    as_branch = _git_accepts("check-ref-format", "--branch", name)  # refuses a leading -
    # Stricter than git on two names that mean HEAD in revisions: `HEAD` (which `git
    # branch` refuses too) and `@` (which it takes).
    expected = as_ref and as_branch and name not in {"HEAD", "@"}
    assert (branch_problem(name) is None) == expected, name


def _git_accepts(*args: str) -> bool:
    return subprocess.run(["git", *args], capture_output=True, check=False).returncode == 0
