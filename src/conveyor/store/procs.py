"""Which process owns a run or a lock ticket, and whether that process is gone."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    host: str


def this_process() -> ProcessIdentity:
    return ProcessIdentity(pid=os.getpid(), host=socket.gethostname())


def is_dead_here(pid: int | None, host: str | None) -> bool:
    """True only when the process ran on this host and no longer exists.

    A process on another host cannot be checked from here, so it counts as alive.
    """
    if pid is None or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, owned by another user
        return False
    return False
