"""The server's bare mirror of the project's repository: a pushed commit is fetched into
it from the configured URL (never one a payload names), and pinned under
`refs/conveyor/commits/<sha>` so that it stays while a queued run needs it.

Refs and ids reach git as separate arguments after `--`, never through a shell; the
caller checks them first (`conveyor.forge.refs`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conveyor.errors import ConveyorError

FETCH_TIMEOUT = 300.0
PINNED = "refs/conveyor/commits/"
INCOMING = "refs/conveyor/incoming"
# No prompt for a password (a server has no terminal), no hooks, no lock waits on status.
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}


class FetchFailed(ConveyorError):
    """The commit could not be fetched into the mirror."""


def ensure_mirror(mirror: Path) -> Path:
    if not (mirror / "HEAD").exists():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        _git(mirror.parent, "init", "--bare", "--quiet", os.fspath(mirror))
    return mirror


def fetch_commit(mirror: Path, url: str, ref: str, sha: str) -> None:
    """Fetch `ref` from `url` and pin `sha`, which must then be in the mirror (the ref may
    have moved on since the push: an ancestor is kept all the same)."""
    ensure_mirror(mirror)
    if not has_commit(mirror, sha):
        fetched = _git(mirror, "fetch", "--no-tags", "--quiet", "--", url, f"+{ref}:{INCOMING}")
        if fetched.returncode != 0:
            raise FetchFailed(f"git fetch {ref} failed: {_error(fetched)}")
        if not has_commit(mirror, sha):  # force-pushed away: ask for the id itself
            _git(mirror, "fetch", "--no-tags", "--quiet", "--", url, sha)
        if not has_commit(mirror, sha):
            raise FetchFailed(f"commit {sha} is not on {ref} of the project's repository")
    pinned = _git(mirror, "update-ref", f"{PINNED}{sha}", sha)
    if pinned.returncode != 0:
        raise FetchFailed(f"cannot pin {sha}: {_error(pinned)}")


def has_commit(mirror: Path, sha: str) -> bool:
    return _git(mirror, "cat-file", "-e", f"{sha}^{{commit}}").returncode == 0


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", "-C", os.fspath(cwd), *args],
            capture_output=True,
            env={**os.environ, **_GIT_ENV},
            timeout=FETCH_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ConveyorError("git is not installed", hint="install git on the server") from exc
    except subprocess.TimeoutExpired:
        raise FetchFailed(f"git {args[0]} took longer than {FETCH_TIMEOUT:.0f}s") from None


def _error(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode("utf-8", errors="replace").strip()[-500:]
