"""After a SIGKILL of `conveyor run`, its jobs' processes may live on: find and end them.

Each job runs in its own session, so killing Conveyor does not kill them. Every job
process carries `CONVEYOR_WORKSPACE` in its environment; a process whose workspace lies
in an interrupted run's folder is one of that run's, whatever its pid or group. Linux
(/proc) only; elsewhere this does nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from pathlib import Path

_PROC = Path("/proc")


def reap_orphans(workspaces: Iterable[Path]) -> list[int]:
    """SIGKILL the leftover processes of the (interrupted) runs with these workspaces;
    returns their pids."""
    prefixes = [_marker(workspace) for workspace in workspaces]
    if not prefixes or not _PROC.is_dir():
        return []
    killed = []
    for pid in _pids():
        if _workspace_of(pid, prefixes):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except (ProcessLookupError, PermissionError):
                continue
    return killed


def _marker(workspace: Path) -> bytes:
    return b"CONVEYOR_WORKSPACE=" + os.fsencode(str(workspace))


def _pids() -> list[int]:
    return [int(entry.name) for entry in _PROC.iterdir() if entry.name.isdigit()]


def _workspace_of(pid: int, prefixes: list[bytes]) -> bool:
    try:
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return False
    return any(
        variable.startswith(prefix) and variable[len(prefix) : len(prefix) + 1] in (b"", b"/")
        for variable in environ.split(b"\0")
        for prefix in prefixes
    )
