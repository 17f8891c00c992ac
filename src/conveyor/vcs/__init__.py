"""Version control: what commit a run builds and which files it changed."""

from __future__ import annotations

from conveyor.vcs.git import GitContext, is_tracked, list_source_files, read_git_context, repo_root

__all__ = ["GitContext", "is_tracked", "list_source_files", "read_git_context", "repo_root"]
