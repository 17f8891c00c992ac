"""Replica log lines: parsed into fields, read whole or as they grow, error lines counted.

A line in a replica's log (`runtimes/logs.py`) starts with the time the pump read it.
After that stamp:

- a JSON object is parsed: its level (`level`, `levelname`, `severity`, `lvl`), message
  (`message`, `msg`, `event`), logger (`logger`, `name`, `logger_name`) and time (`time`,
  `timestamp`, `ts`, `@timestamp`) are taken out, every other key is kept as a field;
- a plain line is kept whole as the message; a leading level word gives its level
  (`ERROR:`, `[warning]`, Python's default `ERROR:logger:message`), and a
  `Traceback (most recent call last):` line is an error unless the line before it already
  was one (`logger.exception` writes both: one exception, one error).

Levels are ordered (debug < info < warning < error < critical); numeric levels follow
pino and bunyan (10 trace ... 50 error, 60 fatal).

`FileTail` reads what a replica's files gained since the last call, following the files
through rotation by inode (a rotated file keeps its inode), so the error counter and
`logs --follow` never reread a line; `ErrorCounter` counts error-level lines per release
from it, parsing only the lines a cheap byte search says may be errors, and keeps its
count beside the files so that every reader shares one counter.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

from conveyor.deploy.runtimes.log_source import LogSource, ReplicaLog
from conveyor.deploy.runtimes.logs import STAMP_LENGTH

_STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z $")
_LEVEL_WORD = re.compile(
    r"^\[?(?P<level>trace|debug|info|notice|warn|warning|error|err|critical|crit|fatal|panic)"
    r"\]?(?::(?P<logger>[\w.-]+):(?P<message>.*)|[:\s]|$)",
    re.IGNORECASE,
)
_TRACEBACK = "Traceback (most recent call last):"
# A line with none of these bytes cannot be error-level: the counter parses only the rest.
_MAYBE_ERROR = re.compile(
    rb"(?i)err|crit|fatal|panic|emerg|alert|severe|traceback|\"level\"\s*:\s*[56]\d"
)
_LEVEL_KEYS = ("level", "levelname", "severity", "lvl", "log.level")
_MESSAGE_KEYS = ("message", "msg", "event")
_LOGGER_KEYS = ("logger", "name", "logger_name", "log.logger")
_TIME_KEYS = ("time", "timestamp", "ts", "@timestamp", "asctime")


class Level(IntEnum):
    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40
    CRITICAL = 50

    @classmethod
    def parse(cls, value: object) -> Level | None:
        """A level from its usual spellings or a pino/bunyan number; None if unknown."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return _NUMERIC.get(int(value) // 10 * 10)
        if isinstance(value, str):
            return _WORDS.get(value.strip().lower())
        return None

    @property
    def label(self) -> str:
        return self.name.lower()


_WORDS = {
    "trace": Level.DEBUG,
    "debug": Level.DEBUG,
    "info": Level.INFO,
    "information": Level.INFO,
    "notice": Level.INFO,
    "warn": Level.WARNING,
    "warning": Level.WARNING,
    "err": Level.ERROR,
    "error": Level.ERROR,
    "exception": Level.ERROR,
    "severe": Level.ERROR,
    "crit": Level.CRITICAL,
    "critical": Level.CRITICAL,
    "fatal": Level.CRITICAL,
    "panic": Level.CRITICAL,
    "alert": Level.CRITICAL,
    "emerg": Level.CRITICAL,
    "emergency": Level.CRITICAL,
}
_NUMERIC = {
    10: Level.DEBUG,
    20: Level.DEBUG,
    30: Level.INFO,
    40: Level.WARNING,
    50: Level.ERROR,
    60: Level.CRITICAL,
}


@dataclass(frozen=True)
class LogLine:
    """One parsed line. `received` is when the pump read it (None for an unstamped line);
    `time` is the line's own time when it names one, else `received`."""

    received: float | None
    time: float | None
    level: Level | None
    message: str
    logger: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


def split_stamp(raw: bytes) -> tuple[float | None, bytes]:
    """The pump's stamp (epoch seconds) and the rest of the line."""
    head = raw[:STAMP_LENGTH]
    if len(head) == STAMP_LENGTH and _STAMP.match(head):
        when = datetime.fromisoformat(head[:-2].decode()).replace(tzinfo=UTC)
        return when.timestamp(), raw[STAMP_LENGTH:]
    return None, raw


def parse_line(raw: bytes, previous: Level | None = None, text: str | None = None) -> LogLine:
    """A line (without its newline) as fields; `previous` is the level of the line before
    (a traceback after an error line is part of that error). `text`, when given, is the
    line after its stamp as the caller already decoded (and masked) it."""
    received, rest = split_stamp(raw)
    body = rest.decode(errors="replace") if text is None else text
    body = body.rstrip("\r")
    if body.startswith("{"):
        parsed = _json_line(body, received)
        if parsed is not None:
            return parsed
    return _plain_line(body, received, previous)


def _json_line(body: str, received: float | None) -> LogLine | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    fields = dict(value)
    level = Level.parse(_pop_first(fields, _LEVEL_KEYS))
    message = _pop_first(fields, _MESSAGE_KEYS)
    logger = _pop_first(fields, _LOGGER_KEYS)
    own_time = _time_of(_pop_first(fields, _TIME_KEYS))
    return LogLine(
        received=received,
        time=own_time if own_time is not None else received,
        level=level,
        message="" if message is None else str(message),
        logger=None if logger is None else str(logger),
        fields=fields,
    )


def _pop_first(fields: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in fields:
            return fields.pop(key)
    return None


def _time_of(value: object) -> float | None:
    """An ISO 8601 time or epoch seconds (or milliseconds) as epoch seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        return seconds / 1000 if seconds > 1e11 else seconds
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip().replace(",", "."))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    return None


def _plain_line(body: str, received: float | None, previous: Level | None) -> LogLine:
    match = _LEVEL_WORD.match(body)
    if match:
        level = Level.parse(match.group("level"))
        if match.group("logger") is not None:
            return LogLine(received, received, level, match.group("message"), match["logger"])
        return LogLine(received, received, level, body)
    if body.startswith(_TRACEBACK):
        level = None if previous is not None and previous >= Level.ERROR else Level.ERROR
        return LogLine(received, received, level, body)
    return LogLine(received, received, None, body)


# --- reading files --------------------------------------------------------------------


@dataclass(frozen=True)
class RawLine:
    """A line as found in a file: its place there (stable through rotation: a rotated
    file keeps its inode) and its bytes, without the newline."""

    inode: int
    offset: int
    data: bytes


def lines_of(path: Path, start: int = 0, end: int | None = None) -> Iterator[RawLine]:
    """The whole lines of `path` from byte `start` (to `end`); a line still being written
    (no newline yet) is left for later. Nothing for a file rotated away meanwhile."""
    try:
        with path.open("rb") as handle:
            inode = os.fstat(handle.fileno()).st_ino
            handle.seek(start)
            data = handle.read() if end is None else handle.read(max(end - start, 0))
    except FileNotFoundError:
        return
    offset = start
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            return
        yield RawLine(inode, offset, line.rstrip(b"\n"))
        offset += len(line)


class FileTail:
    """What one replica's files gained since the last `read`, oldest first.

    The first `read` only notes where each file ends (`from_start=False`) or reads them
    whole (`from_start=True`); with `offsets`, it goes on from there."""

    def __init__(
        self, *, from_start: bool = False, offsets: Mapping[int, int] | None = None
    ) -> None:
        self._offsets: dict[int, int] = dict(offsets or {})  # inode -> bytes already read
        self._primed = from_start or offsets is not None

    @property
    def offsets(self) -> Mapping[int, int]:
        """Where each file was read to, by inode (to resume from, in another reader)."""
        return dict(self._offsets)

    def read(self, files: Sequence[Path]) -> list[RawLine]:
        found: list[RawLine] = []
        seen: dict[int, int] = {}
        for path in reversed(files):  # the oldest file first: its lines came first
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            done = self._offsets.get(stat.st_ino, 0 if self._primed else stat.st_size)
            if stat.st_size < done:  # truncated (keep: 0 removes and reopens): read anew
                done = 0
            new = list(lines_of(path, done, stat.st_size))
            found.extend(new)
            if new:
                last = new[-1]
                done = last.offset + len(last.data) + 1
            seen[stat.st_ino] = done
        self._offsets = seen
        self._primed = True
        return found


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
            # A folder going away, or not ours to write: the last count stands.
            with contextlib.suppress(OSError):
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
        errors, previous = _errors(tail.read(log.files), state.previous)
        kept = _Kept(state.total + errors, tail.offsets, previous)
        handle.seek(0)
        handle.truncate()
        handle.write(kept.to_bytes())
    return kept.total


@dataclass(frozen=True)
class _Kept:
    total: int = 0
    offsets: Mapping[int, int] = field(default_factory=dict)
    previous: Level | None = None  # the level of the last line read (tracebacks)

    def to_bytes(self) -> bytes:
        offsets = {str(inode): offset for inode, offset in self.offsets.items()}
        previous = None if self.previous is None else int(self.previous)
        return json.dumps({"total": self.total, "offsets": offsets, "previous": previous}).encode()


def _state(data: bytes) -> _Kept:
    """The kept state; a new, damaged or foreign file starts the count again."""
    try:
        raw = json.loads(data) if data else {}
        offsets = {int(inode): int(offset) for inode, offset in raw.get("offsets", {}).items()}
        previous = raw.get("previous")
        return _Kept(
            int(raw.get("total", 0)),
            offsets,
            None if previous is None else Level(int(previous)),
        )
    except (ValueError, TypeError, AttributeError):
        return _Kept()


def _errors(lines: list[RawLine], previous: Level | None) -> tuple[int, Level | None]:
    errors = 0
    for line in lines:
        if not _MAYBE_ERROR.search(line.data):
            previous = None
            continue
        level = parse_line(line.data, previous).level
        if level is not None and level >= Level.ERROR:
            errors += 1
        previous = level
    return errors, previous


def error_counter(runtime: object) -> ErrorCounter | None:
    """A counter over `runtime`'s replica logs; None for a runtime that keeps none."""
    return ErrorCounter(runtime) if isinstance(runtime, LogSource) else None
