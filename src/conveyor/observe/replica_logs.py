"""Logs per release: what an environment's replicas wrote, filtered, newest first.

The runtime keeps each replica's output in size-rotated files (deploy/runtimes/logs.py,
every line stamped with the time it was read); nothing is copied or indexed here: a
query reads the files on demand, newest file first, and stops reading a replica once it
has enough lines. Every line is masked with the environment's `secrets:` values before
anything else looks at it, then parsed (deploy/log_lines.py) and filtered:

    release   one of the environment's releases (an id, or a unique prefix of one)
    grep      text the line contains, case-insensitive (as written: a JSON line's keys too)
    since     lines the pump read at or after this time
    level     this level or above (error: error and critical); a line without one is out

`read_logs` answers one page (newest first, with a keyset cursor); `follow_logs` yields
lines as they are written, oldest first.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.deploy.log_lines import (
    FileTail,
    Level,
    RawLine,
    lines_backwards,
    parse_line,
    split_stamp,
)
from conveyor.deploy.runtimes.log_source import LogSource, ReplicaLog
from conveyor.engine.mask import Masker
from conveyor.engine.secrets import available_secrets
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.service import environments as environment_service
from conveyor.service.environments import environment_spec
from conveyor.service.pages import DEFAULT_LIMIT
from conveyor.service.project import Project
from conveyor.spec.durations import parse_duration
from conveyor.store.store import Store

FOLLOW_POLL = 0.25  # seconds between looks at the files while following
LEVELS = tuple(level.label for level in Level)

# (received, release, replica, inode, offset): a line's place in the newest-first order.
LogKey = tuple[float, str, int, int, int]


@dataclass(frozen=True)
class LogEntry:
    """One line as `conveyor logs --env -o json` and the API show it. `time` is the line's
    own time when it names one, else `received` (when the runtime read it)."""

    release: str
    replica: int
    received: float | None
    time: float | None
    level: str | None
    message: str
    logger: str | None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LogQuery:
    release: str | None = None
    grep: str | None = None
    since: float | None = None  # epoch seconds
    level: Level | None = None
    limit: int = DEFAULT_LIMIT
    before: LogKey | None = None  # from a cursor: only lines older than this one

    def matches(self, received: float | None, text: str) -> bool:
        """The checks that need no parsing: time and text."""
        if self.since is not None and (received is None or received < self.since):
            return False
        return self.grep is None or self.grep.lower() in text.lower()

    def keeps(self, level: Level | None) -> bool:
        return self.level is None or (level is not None and level >= self.level)


@dataclass(frozen=True)
class LogPage:
    items: list[LogEntry]
    next_cursor: str | None


# --- the query's words -----------------------------------------------------------------


def parse_since(text: str, now: float | None = None) -> float:
    """`10m`, `1h30m` (that long ago) or an ISO 8601 time (UTC unless it says) as epoch."""
    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConveyorError(
            f"--since {text!r} is neither a duration nor a time",
            hint="a duration such as 10m or 1h30m, or a time such as 2026-12-07T05:30:00",
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def parse_level(text: str) -> Level:
    level = Level.parse(text)
    if level is None:
        raise ConveyorError(
            f"unknown level {text!r}", hint=f"one of {', '.join(LEVELS)} (that level or above)"
        )
    return level


def encode_cursor(key: LogKey) -> str:
    text = ":".join(str(part) for part in key)
    return base64.urlsafe_b64encode(f"log:{text}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> LogKey | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        kind, received, release, replica, inode, offset = (
            base64.urlsafe_b64decode(padded).decode().split(":")
        )
        if kind == "log":
            return (float(received), release, int(replica), int(inode), int(offset))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ConveyorError("the cursor is not one this server gave", hint="start from the first page")


# --- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvironmentLogs:
    """An environment's log files and its masker: what every query reads through."""

    name: str
    releases: tuple[str, ...]  # oldest first
    source: LogSource | None  # None: the runtime keeps no log files here
    masker: Masker

    def logs_of(self, release: str) -> list[ReplicaLog]:
        return [] if self.source is None else self.source.replica_logs(release)

    def chosen(self, release: str | None) -> tuple[str, ...]:
        """The releases a query reads: all, or the one `release` names."""
        if release is None:
            return self.releases
        if release in self.releases:
            return (release,)
        named = [known for known in self.releases if known.startswith(release)]
        if len(named) == 1:
            return (named[0],)
        known = ", ".join(self.releases) or "none yet"
        raise NotFoundError(
            f"no release {release!r} in {self.name}"
            + (" (more than one starts so)" if named else ""),
            hint=f"its releases: {known}",
        )


def environment_logs(project: Project, store: Store, name: str) -> EnvironmentLogs:
    spec = environment_spec(project, name)
    # Looked up at each call, not bound at import: the fake data plane of the tests
    # swaps the service's function, and a module imported meanwhile would keep the fake.
    runtime = environment_service.make_runtime(project, spec)
    secrets = available_secrets(
        spec.secrets, root=project.directory, environ=os.environ, environment=name
    )
    releases = tuple(r.release_id for r in store.ledger.releases.of_environment(name))
    source = runtime if isinstance(runtime, LogSource) else None
    return EnvironmentLogs(name, releases, source, Masker(secrets.values()))


def read_logs(project: Project, store: Store, name: str, query: LogQuery) -> LogPage:
    return read_page(environment_logs(project, store, name), query)


def read_page(logs: EnvironmentLogs, query: LogQuery) -> LogPage:
    """The newest `query.limit` lines that match, newest first, and the next page's cursor."""
    found: list[tuple[LogKey, LogEntry]] = []
    for release in logs.chosen(query.release):
        for log in logs.logs_of(release):
            found.extend(_newest_of_replica(logs.masker, release, log, query, query.limit + 1))
    found.sort(key=lambda pair: pair[0], reverse=True)
    shown = found[: query.limit]
    more = len(found) > query.limit and shown
    return LogPage([entry for _, entry in shown], encode_cursor(shown[-1][0]) if more else None)


def _newest_of_replica(
    masker: Masker, release: str, log: ReplicaLog, query: LogQuery, wanted: int
) -> list[tuple[LogKey, LogEntry]]:
    """Up to `wanted` matching lines of one replica, newest first, reading its files from
    the newest and stopping as soon as it has them (or the files get older than `since`)."""
    found: list[tuple[LogKey, LogEntry]] = []
    for path in log.files:
        try:
            if query.since is not None and path.stat().st_mtime < query.since:
                break  # this file, and the older ones, ended before `since`
        except FileNotFoundError:
            continue
        for line, before in lines_backwards(path):
            previous = None if before is None else RawLine(line.inode, 0, before)
            entry = _entry(masker, release, log.replica, line, previous=previous, query=query)
            if entry is not None:
                found.append(entry)
                if len(found) >= wanted:
                    return found
    return found


def _entry(
    masker: Masker,
    release: str,
    replica: int,
    line: RawLine,
    *,
    previous: RawLine | None,
    query: LogQuery,
) -> tuple[LogKey, LogEntry] | None:
    received, rest = split_stamp(line.data)
    key: LogKey = (received or 0.0, release, replica, line.inode, line.offset)
    if query.before is not None and key >= query.before:
        return None
    text = masker.mask_text(rest.decode(errors="replace"))
    if not query.matches(received, text):
        return None
    before = None
    if previous is not None and text.startswith("Traceback"):
        before = parse_line(previous.data).level
    parsed = parse_line(line.data, before, text=text)
    if not query.keeps(parsed.level):
        return None
    return key, LogEntry(
        release=release,
        replica=replica,
        received=received,
        time=parsed.time,
        level=None if parsed.level is None else parsed.level.label,
        message=parsed.message,
        logger=parsed.logger,
        fields={name: _finite(value) for name, value in parsed.fields.items()},
    )


def _finite(value: Any) -> Any:
    """JSON as strict parsers read it: a replica's NaN or Infinity becomes its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


# --- following -------------------------------------------------------------------------


def follow_logs(
    logs_of: Callable[[], EnvironmentLogs],
    query: LogQuery,
    *,
    stop: Callable[[], bool] = lambda: False,
    poll: float = FOLLOW_POLL,
) -> Iterator[LogEntry]:
    """Lines written from this call on, oldest first, until `stop()`. What the files hold
    now is noted at once (read a page after this call to show it: nothing falls between).
    `logs_of` is asked again each round, so a release deployed meanwhile is followed from
    its first line."""
    follower = _Follower(logs_of, query)
    follower.read()
    return follower.entries(stop, poll)


class _Follower:
    def __init__(self, logs_of: Callable[[], EnvironmentLogs], query: LogQuery) -> None:
        self.logs_of = logs_of
        self.query = query
        self.tails: dict[tuple[str, int], FileTail] = {}
        self.started = False

    def read(self) -> list[LogEntry]:
        logs, query = self.logs_of(), self.query
        fresh: list[tuple[LogKey, LogEntry]] = []
        for release in logs.chosen(query.release):
            for log in logs.logs_of(release):
                # A replica or a release that appears after the start: from its first line.
                tail = self.tails.setdefault(
                    (release, log.replica), FileTail(from_start=self.started)
                )
                lines = tail.read(log.files)
                fresh.extend(_matching(logs.masker, release, log.replica, lines, query))
        self.started = True
        fresh.sort(key=lambda pair: pair[0])
        return [entry for _, entry in fresh]

    def entries(self, stop: Callable[[], bool], poll: float) -> Iterator[LogEntry]:
        while not stop():
            time.sleep(poll)
            yield from self.read()


def _matching(
    masker: Masker, release: str, replica: int, lines: Sequence[RawLine], query: LogQuery
) -> Iterator[tuple[LogKey, LogEntry]]:
    for index, line in enumerate(lines):
        previous = lines[index - 1] if index else None
        entry = _entry(masker, release, replica, line, previous=previous, query=query)
        if entry is not None:
            yield entry
