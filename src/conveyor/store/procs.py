"""Which process owns a run, a lock ticket or a deploy, and whether that process is gone.

A pid alone does not name a process: once it exits, the kernel may hand its pid to any
new process, which would keep the dead owner's tickets alive. So an owner is recorded
with its start time (field 22 of /proc/PID/stat, clock ticks after boot), and a process
with the same pid but another start time is a different one: the owner is dead.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_STARTTIME_FIELD = 22  # man 5 proc: (22) starttime


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    host: str
    started: int | None = None  # the start time; None where /proc cannot tell


def this_process() -> ProcessIdentity:
    pid = os.getpid()
    return ProcessIdentity(pid=pid, host=this_host(), started=start_time(pid))


def this_host() -> str:
    return socket.gethostname()


def start_time(pid: int) -> int | None:
    """When process `pid` started, in clock ticks after boot; None if it is gone or this
    system has no /proc."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    index = _STARTTIME_FIELD - 3  # the fields after the name start at field 3
    try:
        return int(fields[index])
    except (IndexError, ValueError):
        return None


def _is_zombie(pid: int) -> bool:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2 :].split()
    return bool(fields) and fields[0] in ("Z", "X")  # (3) state


def is_dead_here(pid: int | None, host: str | None, started: int | None = None) -> bool:
    """True only when the process ran on this host and no longer exists: no process has
    its pid, the one that has it started at another time than `started` (pid reuse), or it
    is a zombie (it exited; its parent has not collected it yet: a process killed with its
    parent waits for init to do that, which may take a while).

    A process on another host cannot be checked from here, so it counts as alive.
    """
    if pid is None or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, owned by another user
        pass
    if _is_zombie(pid):
        return True
    if started is None:
        return False  # recorded before start times were: the pid is all there is
    now = start_time(pid)
    return now is not None and now != started
