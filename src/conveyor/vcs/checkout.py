"""Checking a commit out into a workspace, and git's own content ids for its files."""

from __future__ import annotations

import os
from pathlib import Path

from conveyor.vcs.git import run_git


def checkout(repository: Path, sha: str, destination: Path) -> None:
    """A shared, detached clone of `repository` at `sha` (objects borrowed, not copied)."""
    run_git(repository, "clone", "--quiet", "--shared", "--no-checkout", ".", str(destination))
    run_git(destination, "-c", "advice.detachedHead=false", "checkout", "--quiet", sha)


def tree_digests(directory: Path, sha: str) -> dict[str, str]:
    """`path -> "mode:blob-id"` for every file of `sha` under `directory` (relative to it)."""
    output = run_git(directory, "ls-tree", "-r", "-z", sha, "--", ".")
    digests: dict[str, str] = {}
    for entry in output.split(b"\0"):
        if not entry:
            continue
        meta, _, name = entry.partition(b"\t")
        mode, kind, blob = meta.split(b" ")
        if kind == b"blob":  # submodules (commits) are not files of this tree
            digests[os.fsdecode(name)] = f"{mode.decode()}:{blob.decode()}"
    return digests
