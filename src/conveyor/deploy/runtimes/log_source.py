"""Where a runtime keeps its replicas' output, for readers (`deploy/log_lines.py`).

An optional Protocol beside `Runtime`: a runtime that keeps each replica's output in
rotated files (`logs.RotatingLog`: `replica-<i>.log`, then `.1` newest to `.<keep>`) says
where they are; one that does not (podman keeps its own logs) simply lacks the method,
and readers then show nothing for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

_REPLICA_LOG = re.compile(r"^replica-(\d+)\.log(?:\.(\d+))?$")


@dataclass(frozen=True)
class ReplicaLog:
    """One replica's log files, the current one first, then older ones, newest first."""

    replica: int
    files: tuple[Path, ...]


@runtime_checkable
class LogSource(Protocol):
    def replica_logs(self, release_id: str) -> list[ReplicaLog]:
        """Each replica's log files; none for a release this runtime never ran."""
        ...


def replica_logs_in(folder: Path) -> list[ReplicaLog]:
    """The `replica-<i>.log[.<n>]` files of a release's folder, by replica."""
    found: dict[int, list[tuple[int, Path]]] = {}
    try:
        entries = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    for path in entries:
        match = _REPLICA_LOG.match(path.name)
        if match:
            generation = int(match.group(2) or 0)
            found.setdefault(int(match.group(1)), []).append((generation, path))
    return [
        ReplicaLog(replica, tuple(path for _, path in sorted(files)))
        for replica, files in sorted(found.items())
    ]
