"""The git context of a run: commit, branch, tag, author, dirtiness and changed files.

`read_git_context` runs at the start of every pipeline run, so it keeps to a handful of
git invocations: one `log`, one `status` (which also names the branch), one `tag`, and
one or two for the changed files.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from conveyor.errors import ConveyorError

_LOG_FORMAT = "%H%x00%P%x00%an%x00%ae%x00%cI%x00%B"


@dataclass(frozen=True)
class GitContext:
    root: Path
    sha: str
    branch: str | None  # None on a detached HEAD
    tag: str | None
    author_name: str
    author_email: str
    message: str
    committed_at: datetime  # timezone-aware
    dirty: bool  # uncommitted changes or untracked (not ignored) files
    changed_files: tuple[str, ...] | None  # None = unknown (e.g. shallow clone boundary)
    since: str | None = None  # the commit changes are counted from (last successful run)


def repo_root(path: Path) -> Path:
    """The top-level directory of the git work tree containing `path`."""
    result = _git(path, "rev-parse", "--show-toplevel")
    if result.returncode != 0:
        raise ConveyorError(
            f"{path} is not a git repository",
            hint="run conveyor inside a git work tree, or create one with `git init`",
        )
    return Path(os.fsdecode(result.stdout.rstrip(b"\n")))


def read_git_context(root: Path, since: str | None = None) -> GitContext:
    """Describe HEAD of the repository at `root` (its top-level directory).

    Changed files are those between `since` and HEAD when `since` is an ancestor of HEAD,
    otherwise those HEAD changed relative to its first parent (every file for a root
    commit); uncommitted and untracked files are added when the tree is dirty. All paths
    are relative to the repository's top level.
    """
    head = _read_head(root)
    branch, uncommitted = _read_status(root)
    committed = _committed_changes(root, head, since)
    changed = None if committed is None else tuple(sorted({*committed, *uncommitted}))
    return GitContext(
        root=root,
        sha=head.sha,
        branch=branch,
        tag=_read_tag(root),
        author_name=head.author_name,
        author_email=head.author_email,
        message=head.message,
        committed_at=head.committed_at,
        dirty=bool(uncommitted),
        changed_files=changed,
        since=since,
    )


def read_commit_context(
    repository: Path, sha: str, *, branch: str | None, since: str | None = None
) -> GitContext:
    """Describe commit `sha` of any repository holding it (a checkout or a bare mirror),
    as `read_git_context` describes HEAD: the server runs commits that are not checked out.
    Nothing is uncommitted; `branch` is what the caller says the commit was pushed to."""
    head = _read_head(repository, sha)
    committed = _committed_changes(repository, head, since)
    return GitContext(
        root=repository,
        sha=head.sha,
        branch=branch,
        tag=_read_tag(repository, head.sha),
        author_name=head.author_name,
        author_email=head.author_email,
        message=head.message,
        committed_at=head.committed_at,
        dirty=False,
        changed_files=None if committed is None else tuple(sorted(committed)),
        since=since,
    )


def resolve_revision(repository: Path, revision: str) -> tuple[str, str | None]:
    """The full sha of the commit `revision` (a sha, branch, tag or HEAD) names in
    `repository`, and the branch it names (HEAD: the checked-out one), in one git call."""
    refused = ConveyorError(
        f"no commit {revision!r} in {repository}",
        hint="name a commit sha, a branch or a tag of the project's repository",
    )
    if not revision or revision.startswith("-"):
        raise refused
    result = _git(
        repository, "rev-parse", f"{revision}^{{commit}}", "--symbolic-full-name", revision, "--"
    )
    if result.returncode != 0:
        raise refused
    lines = result.stdout.decode().split()
    named = lines[1] if len(lines) > 1 else ""  # refs/heads/..., refs/tags/..., HEAD, none
    return lines[0], named.removeprefix("refs/heads/") if named.startswith("refs/heads/") else None


def read_file_at(repository: Path, sha: str, path: str) -> str | None:
    """The text of `path` (relative to the top level) in commit `sha`; None if absent."""
    result = _git(repository, "show", f"{sha}:{path}")
    return result.stdout.decode("utf-8") if result.returncode == 0 else None


def list_source_files(root: Path) -> list[str]:
    """Tracked plus untracked-but-not-ignored files that exist, sorted posix paths.

    Given a subdirectory of a work tree, lists only the files below it, relative to it.
    """
    output = run_git(root, "ls-files", "-co", "--exclude-standard", "-z")
    names = {os.fsdecode(name) for name in output.split(b"\0") if name}
    # Skip tracked files deleted from the work tree, and submodule directories.
    return sorted(name for name in names if _is_file_or_link(root / name))


def is_tracked(root: Path, relative_path: str) -> bool:
    """Whether git tracks `relative_path` (False also when `root` is not a repository)."""
    result = _git(root, "ls-files", "--error-unmatch", "--", relative_path)
    return result.returncode == 0


def ignored_by_git(path: Path) -> bool | None:
    """Whether git ignores `path` (a tracked file is not ignored); None outside a repository."""
    result = _git(path.parent, "check-ignore", "-q", "--", path.name)
    return {0: True, 1: False}.get(result.returncode)


@dataclass(frozen=True)
class _Head:
    sha: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    committed_at: datetime
    message: str


def _read_head(root: Path, revision: str = "HEAD") -> _Head:
    result = _git(
        root, "log", "-1", "--no-show-signature", f"--format={_LOG_FORMAT}", revision, "--"
    )
    if result.returncode != 0:
        repo_root(root)  # raises the clearer error when this is no repository at all
        raise ConveyorError(
            f"the git repository at {root} has no commits yet",
            hint="commit your files first: git add -A && git commit -m 'initial commit'",
        )
    text = result.stdout.decode("utf-8", errors="replace")
    sha, parents, name, email, committed, message = text.split("\0", 5)
    return _Head(
        sha=sha,
        parents=tuple(parents.split()),
        author_name=name,
        author_email=email,
        committed_at=datetime.fromisoformat(committed),
        message=message.rstrip("\n"),
    )


def _read_status(root: Path) -> tuple[str | None, set[str]]:
    """The current branch (None when detached) and every path with uncommitted changes."""
    output = run_git(root, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")
    branch: str | None = None
    paths: set[str] = set()
    records = iter(output.split(b"\0"))
    for record in records:
        kind = record[:1]
        if record.startswith(b"# branch.head "):
            name = os.fsdecode(record[len(b"# branch.head ") :])
            branch = None if name == "(detached)" else name
        elif kind in (b"1", b"2", b"u", b"?"):
            paths.add(os.fsdecode(record.split(b" ", _STATUS_FIELDS[kind])[-1]))
            if kind == b"2":  # a rename or copy: the next record is the original path
                paths.add(os.fsdecode(next(records)))
    return branch, paths


# Space-separated fields before the path in each porcelain v2 record kind.
_STATUS_FIELDS = {b"1": 8, b"2": 9, b"u": 10, b"?": 1}


def _read_tag(root: Path, revision: str = "HEAD") -> str | None:
    # Several tags on one commit: report the highest version.
    output = run_git(root, "tag", "--points-at", revision, "--sort=-v:refname")
    tags = output.decode("utf-8", errors="replace").split()
    return tags[0] if tags else None


def _committed_changes(root: Path, head: _Head, since: str | None) -> list[str] | None:
    if since is not None and _is_ancestor(root, since, head.sha):
        return _diff_names(root, since, head.sha)
    if head.parents:
        return _diff_names(root, head.parents[0], head.sha)
    if _is_shallow(root):
        return None  # the boundary commit of a shallow clone only looks like a root
    return _split_names(
        run_git(root, "diff-tree", "-r", "--root", "--no-commit-id", "--name-only", "-z", head.sha)
    )


def _is_ancestor(root: Path, since: str, head: str) -> bool:
    return (
        _git(root, "merge-base", "--is-ancestor", "--end-of-options", since, head).returncode == 0
    )


def _is_shallow(root: Path) -> bool:
    return run_git(root, "rev-parse", "--is-shallow-repository").strip() == b"true"


def _diff_names(root: Path, old: str, new: str) -> list[str]:
    # --no-renames: a rename changes both the old and the new path.
    return _split_names(
        run_git(
            root, "diff", "--name-only", "--no-renames", "-z", "--end-of-options", old, new, "--"
        )
    )


def _split_names(output: bytes) -> list[str]:
    return [os.fsdecode(name) for name in output.split(b"\0") if name]


def _is_file_or_link(path: Path) -> bool:
    return path.is_symlink() or path.is_file()


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", "-C", os.fspath(cwd), *args],
            capture_output=True,
            # `git status` may otherwise take the index lock to refresh it, racing other runs.
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
            check=False,
        )
    except FileNotFoundError as exc:
        raise ConveyorError(
            "git is not installed", hint="install git and make sure it is on PATH"
        ) from exc


def run_git(cwd: Path, *args: str) -> bytes:
    """Run a git command in `cwd` and return its stdout; a failure is a ConveyorError."""
    result = _git(cwd, *args)
    if result.returncode != 0:
        error = result.stderr.decode("utf-8", errors="replace").strip()
        raise ConveyorError(f"git {args[0]} failed in {cwd}: {error}")
    return result.stdout


def current_branch(root: Path) -> str | None:
    """The checked-out branch, or None on a detached HEAD (one cheap git call)."""
    result = _git(root, "symbolic-ref", "--quiet", "--short", "HEAD")
    if result.returncode != 0:
        return None
    return result.stdout.decode().strip() or None


def remote_url(root: Path) -> str | None:
    """The `origin` remote's URL, the repository's public name when it has one."""
    result = _git(root, "config", "--get", "remote.origin.url")
    return result.stdout.decode().strip() or None if result.returncode == 0 else None
