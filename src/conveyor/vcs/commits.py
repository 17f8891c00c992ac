"""The commits of a change: `git log since..until`, with who wrote and who committed each.

The release record lists them, and the approval gate refuses every author and committer
among them, so both read them here, one `git log` each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conveyor.vcs.git import run_git

_FIELD = "\x1f"
_FORMAT = _FIELD.join(("%H", "%an <%ae>", "%cn <%ce>", "%ct", "%s"))


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str  # git's "Name <email>"
    committer: str  # the same, for whoever made the commit object (a rebase, an `am`)
    committed_at: float
    subject: str


def log_commits(
    directory: Path, until: str, since: str | None = None, limit: int | None = None
) -> list[Commit]:
    """Newest first: the commits reachable from `until` and not from `since` (every
    ancestor of `until` without it), at most `limit`. A ConveyorError when git fails, e.g.
    for a commit the repository no longer has."""
    revision = f"{since}..{until}" if since else until
    options = [f"--max-count={limit}"] if limit is not None else []
    output = run_git(
        directory,
        "log",
        "--no-show-signature",
        f"--format={_FORMAT}",
        *options,
        "--end-of-options",
        revision,
        "--",
    )
    return [_parse(line) for line in output.decode("utf-8", errors="replace").splitlines()]


def _parse(line: str) -> Commit:
    sha, author, committer, when, subject = line.split(_FIELD, 4)
    return Commit(sha, author, committer, float(when), subject)
