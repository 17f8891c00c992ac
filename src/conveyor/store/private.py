"""The state folder is its owner's alone: folders 0700, files 0600 (blobs 0400).

It holds flag segments with user ids, approvals and releases, job logs: records nobody
else on the machine should read. Modes are given at creation (never left to the umask),
and a folder or database found open to others is tightened, or said to be when it cannot
be (another user owns it).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import TextIO

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_OTHERS = 0o077  # the group's and everyone else's bits


def private_dir(path: Path) -> Path:
    """`path` as a folder only its owner may enter: created 0700 (missing parents with the
    umask's mode), an existing one tightened. Returns `path`."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    tighten(path)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty, 0600, unless it exists; an existing one is tightened."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        tighten(path)
    return path


def open_private_append(path: Path) -> TextIO:
    """`path` opened to append text, line-buffered; created 0600, tightened if it exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    try:
        mode = stat.S_IMODE(os.fstat(descriptor).st_mode)
        if mode & _OTHERS:
            os.fchmod(descriptor, mode & ~_OTHERS)
    except OSError:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "a", encoding="utf-8", buffering=1)


def tighten(path: Path) -> None:
    """Take the group's and others' bits off `path`; warn when its owner is someone else."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & _OTHERS:
        return
    try:
        os.chmod(path, mode & ~_OTHERS)
    except PermissionError:
        print(
            f"warning: {path} is open to other users (mode {mode:04o}) and is not yours to "
            f"change: ask its owner to `chmod go-rwx {path}`",
            file=sys.stderr,
        )
