"""Error-level log lines per release: the signal beside the router's golden signals.

A release that answers 200 while it logs exceptions is not healthy, and the router
cannot see it. `ErrorCounter` counts the error and critical lines of each release's
replicas (deploy/log_lines.py parses them) as a cumulative counter, like the router's
request counters: the `router` metrics provider and every golden-signal sample carry it
(`ReleaseSignals.log_errors`), and the judge reads it when asked (`log_errors: true`).

Only what the files gained since the last reading is read, and only the lines a byte
search (in C, over the whole block) says may be errors are parsed. The count and how far
each file was read are kept beside the files (`replica-<i>.errors`, under a file lock),
so every reader in every process shares one counter.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.deploy.log_lines import TRACEBACK, FileTail, Level, RawLine, parse_line
from conveyor.deploy.runtimes.log_source import LogSource, ReplicaLog

# A line with none of these bytes cannot be error-level: the counter parses only the rest.
_MAYBE_ERROR = re.compile(
    rb"(?i)err|crit|fatal|panic|emerg|alert|severe|traceback|\"level\"\s*:\s*[56]\d"
)
_ERROR_WORDS = (b"err", b"crit", b"fatal", b"panic", b"emerg", b"alert", b"severe", b"traceback")
_NUMERIC_ERROR = re.compile(rb'"level"\s*:\s*[56]\d')


class ErrorCounter:
    """Error-level lines (error and critical) a runtime's releases wrote: a cumulative
    counter per release, the same for every reader in every process.

    Each replica's count and how far its files were read are kept beside them
    (`replica-<i>.errors`, under a file lock): a reading adds what the files gained
    since any reader's last one, so the deploy's judge, `env watch` and the server's
    watch all see one counter, as they see the router's. A replica's first reading
    counts what its files hold (rotated-away lines are lost: counters start there)."""

    def __init__(self, source: LogSource) -> None:
        self.source = source
        self._last: dict[tuple[str, int], int] = {}  # when the state file cannot be written

    def __call__(self, release_id: str) -> int:
        return self.count(release_id)

    def count(self, release_id: str) -> int:
        total = 0
        for log in self._logs(release_id):
            key = (release_id, log.replica)
            # A folder going away, not ours to write, or a line no parser foresaw: the
            # last count stands (a signal must never stop a deploy or a watch).
            with contextlib.suppress(OSError, ValueError, OverflowError):
                self._last[key] = _count_replica(log)
            total += self._last.get(key, 0)
        return total

    def _logs(self, release_id: str) -> list[ReplicaLog]:
        try:
            return self.source.replica_logs(release_id)
        except (OSError, ValueError):  # an odd release id or a folder going away
            return []


def _count_replica(log: ReplicaLog) -> int:
    """Add what one replica's files gained to its kept count; the new count."""
    state_path = log.files[0].parent / f"replica-{log.replica}.errors"
    descriptor = os.open(state_path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "r+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        state = _state(handle.read())
        tail = FileTail(offsets=state.offsets)
        errors, previous = _errors(tail.read_blocks(log.files), state.previous)
        kept = _Kept(state.total + errors, tail.offsets, previous)
        handle.seek(0)
        handle.truncate()
        handle.write(kept.to_bytes())
    return kept.total


@dataclass(frozen=True)
class _Kept:
    total: int = 0
    offsets: Mapping[str, int] = field(default_factory=dict)
    previous: Level | None = None  # the level of the last line read (tracebacks)

    def to_bytes(self) -> bytes:
        offsets = dict(self.offsets)
        previous = None if self.previous is None else int(self.previous)
        return json.dumps({"total": self.total, "offsets": offsets, "previous": previous}).encode()


def _state(data: bytes) -> _Kept:
    """The kept state; a new, damaged or foreign file starts the count again."""
    try:
        raw = json.loads(data) if data else {}
        offsets = {str(key): int(offset) for key, offset in raw.get("offsets", {}).items()}
        previous = raw.get("previous")
        return _Kept(
            int(raw.get("total", 0)),
            offsets,
            None if previous is None else Level(int(previous)),
        )
    except (ValueError, TypeError, AttributeError):
        return _Kept()


def _errors(blocks: list[RawLine], previous: Level | None) -> tuple[int, Level | None]:
    """Error-level lines in `blocks`, and the level of the last line. Only lines a byte
    search (in C, over the whole block) says may be errors are parsed."""
    errors = 0
    for block in blocks:
        data = block.data
        for start in _candidate_lines(data):
            end = data.find(b"\n", start)
            before = previous if start == 0 else None
            if start and TRACEBACK.encode() in data[start:end]:
                before = parse_line(data[data.rfind(b"\n", 0, start - 1) + 1 : start - 1]).level
            level = parse_line(data[start:end], before).level
            if level is not None and level >= Level.ERROR:
                errors += 1
        last = data[data.rfind(b"\n", 0, len(data) - 1) + 1 : -1]
        previous = parse_line(last).level if _MAYBE_ERROR.search(last) else None
    return errors, previous


def _candidate_lines(data: bytes) -> list[int]:
    """Where the lines that may be error-level start, in order."""
    lowered, starts = data.lower(), set()
    for word in _ERROR_WORDS:
        at = lowered.find(word)
        while at != -1:
            starts.add(lowered.rfind(b"\n", 0, at) + 1)
            at = lowered.find(word, lowered.find(b"\n", at))
    for match in _NUMERIC_ERROR.finditer(data):
        starts.add(data.rfind(b"\n", 0, match.start()) + 1)
    return sorted(starts)


def error_counter(runtime: object) -> ErrorCounter | None:
    """A counter over `runtime`'s replica logs; None for a runtime that keeps none."""
    return ErrorCounter(runtime) if isinstance(runtime, LogSource) else None
