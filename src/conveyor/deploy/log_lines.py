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
through rotation (a rotated file keeps its inode), so the error counter (`log_errors.py`)
and `logs --follow` never reread a line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

from conveyor.deploy.runtimes.logs import STAMP_LENGTH

_STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z $")
_LEVEL_WORD = re.compile(
    r"^\[?(?P<level>trace|debug|info|notice|warn|warning|error|err|critical|crit|fatal|panic)"
    r"\]?(?::(?P<logger>[\w.-]+):(?P<message>.*)|[:\s]|$)",
    re.IGNORECASE,
)
TRACEBACK = "Traceback (most recent call last):"
_HEAD_BYTES = 512  # a file is known by its inode and its first line (up to this)
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
            if not math.isfinite(value):  # json.loads takes NaN and Infinity
                return None
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
        try:
            when = datetime.fromisoformat(head[:-2].decode()).replace(tzinfo=UTC)
        except ValueError:  # the shape of a stamp, not a time: a replica's own text
            return None, raw
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
        if not math.isfinite(seconds):
            return None
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
    if body.startswith(TRACEBACK):
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


def whole_lines(path: Path, start: int = 0, end: int | None = None) -> RawLine | None:
    """The bytes of `path` from `start` (to `end`) up to its last newline, as one block
    (`data` ends with the newline); a line still being written is left for later. None
    for a file rotated away meanwhile or with no whole line there."""
    try:
        with path.open("rb") as handle:
            inode = os.fstat(handle.fileno()).st_ino
            handle.seek(start)
            data = handle.read() if end is None else handle.read(max(end - start, 0))
    except FileNotFoundError:
        return None
    cut = data.rfind(b"\n") + 1
    return RawLine(inode, start, data[:cut]) if cut else None


def split_lines(block: RawLine) -> list[RawLine]:
    """A block of whole lines as one RawLine each, without their newlines."""
    found, offset = [], block.offset
    for line in block.data.split(b"\n")[:-1]:
        found.append(RawLine(block.inode, offset, line))
        offset += len(line) + 1
    return found


def lines_of(path: Path, start: int = 0, end: int | None = None) -> list[RawLine]:
    """The whole lines of `path` from byte `start` (to `end`)."""
    block = whole_lines(path, start, end)
    return [] if block is None else split_lines(block)


def lines_backwards(path: Path) -> Iterator[tuple[RawLine, bytes | None]]:
    """The whole lines of `path`, the last first, each with the line before it (None for
    the first): a reader that wants the newest few lines splits no more than those."""
    block = whole_lines(path)
    if block is None:
        return
    data, end = block.data, len(block.data) - 1  # the last newline
    while end >= 0:
        start = data.rfind(b"\n", 0, end) + 1
        before = data[data.rfind(b"\n", 0, start - 1) + 1 : start - 1] if start else None
        yield RawLine(block.inode, start, data[start:end]), before
        end = start - 1


class FileTail:
    """What one replica's files gained since the last `read`, oldest first.

    A file is known by its inode and its first line (stamped): a rotated file keeps its
    inode, and an inode the file system reuses for a new file comes with another first
    line (unless a replica wrote the very same line in the same millisecond). The first
    `read` only notes where each file ends (`from_start=False`) or reads them whole
    (`from_start=True`); with `offsets` (from another reader), it goes on from there."""

    def __init__(
        self, *, from_start: bool = False, offsets: Mapping[str, int] | None = None
    ) -> None:
        self._offsets: dict[str, int] = dict(offsets or {})  # file identity -> bytes read
        self._primed = from_start or offsets is not None

    @property
    def offsets(self) -> Mapping[str, int]:
        """Where each file was read to, by identity (to resume from, in another reader)."""
        return dict(self._offsets)

    def read(self, files: Sequence[Path]) -> list[RawLine]:
        """The new lines, one RawLine each."""
        return [line for block in self.read_blocks(files) for line in split_lines(block)]

    def read_blocks(self, files: Sequence[Path]) -> list[RawLine]:
        """The new bytes of each file that grew, oldest file first, in whole lines."""
        found: list[RawLine] = []
        seen: dict[str, int] = {}
        for path in reversed(files):  # the oldest file first: its lines came first
            known = _identity(path)
            if known is None:
                continue
            identity, size = known
            done = self._offsets.get(identity, 0 if self._primed else size)
            if done > size:  # not the file it was (truncated, or a reused inode): anew
                done = 0
            block = whole_lines(path, done, size) if done < size else None
            if block is not None:
                found.append(block)
                done = block.offset + len(block.data)
            seen[identity] = done
        self._offsets = seen
        self._primed = True
        return found


def _identity(path: Path) -> tuple[str, int] | None:
    """`<inode>:<a hash of its first line>` and the size; None for a file gone meanwhile.
    A file's first line never changes (until it has one, nothing whole was read)."""
    try:
        with path.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            head = handle.read(_HEAD_BYTES)
    except FileNotFoundError:
        return None
    first_line = head[: head.find(b"\n") + 1 or len(head)]
    digest = hashlib.blake2b(first_line, digest_size=8).hexdigest()
    return f"{stat.st_ino}:{digest}", stat.st_size
