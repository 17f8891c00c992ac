"""`conveyor logs --env ENV`: what an environment's replicas wrote (observe/replica_logs.py).

Called by `conveyor logs` (cli/inspect.py) when `--env` is given; the run/job form of
the command is unchanged.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.cli.output import OutputFormat, emit_json, emit_json_line
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.observe.replica_logs import LogEntry, LogQuery


@dataclass(frozen=True)
class EnvLogsArgs:
    env: str
    release: str | None
    grep: str | None
    since: str | None
    level: str | None
    limit: int
    follow: bool
    output: OutputFormat
    spec: Path | None


def env_only_options(
    release: str | None, grep: str | None, since: str | None, level: str | None
) -> list[str]:
    """The --env options given (an error without --env)."""
    given = {"--release": release, "--grep": grep, "--since": since, "--level": level}
    return [name for name, value in given.items() if value is not None]


def env_logs(args: EnvLogsArgs) -> None:
    from conveyor.cli import target

    query = _query(args)
    remote = target.client()
    if remote is not None:
        if args.follow:
            raise ConveyorError(
                "--follow with --env reads the replicas' files: it needs the project here",
                hint="run it on the server's host, or leave out --follow",
            )
        from conveyor.cli.remote import PAGE_LIMIT, path_of
        from conveyor.observe.replica_logs import LogEntry

        params = {
            "release": args.release,
            "grep": args.grep,
            "since": args.since,
            "level": args.level,
        }
        path = path_of("environments", args.env, "logs")
        found: list[Any] = []
        cursor: str | None = None
        while True:  # pages of the API until --limit lines, keeping the last cursor
            want = min(PAGE_LIMIT, args.limit - len(found))
            page = remote.get(path, {**params, "limit": want, "cursor": cursor})
            found.extend(page["items"])
            cursor = page.get("next_cursor")
            if cursor is None or len(found) >= args.limit:
                break
        _show([LogEntry(**item) for item in found], cursor, args.output)
        return
    from conveyor.observe.replica_logs import environment_logs, follow_logs, read_page
    from conveyor.service.project import Project

    project = Project.locate(args.spec)
    with project.open_store(create=False) as store:
        logs = environment_logs(project, store, args.env)
        if not args.follow:
            page = read_page(logs, query)
            _show(page.items, page.next_cursor, args.output)
            return
        # Noted before the page is read, so that no line falls between the two.
        followed = follow_logs(lambda: environment_logs(project, store, args.env), query)
        for entry in reversed(read_page(logs, query).items):
            _show_one(entry, args.output)
        try:
            for entry in followed:
                _show_one(entry, args.output)
        except KeyboardInterrupt:
            return


def _query(args: EnvLogsArgs) -> LogQuery:
    from conveyor.observe.replica_logs import LogQuery, parse_level, parse_since

    return LogQuery(
        release=args.release,
        grep=args.grep or None,
        since=None if args.since is None else parse_since(args.since),
        level=None if args.level is None else parse_level(args.level),
        limit=args.limit,
    )


def _show(entries: list[LogEntry], next_cursor: str | None, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        emit_json({"items": entries, "next_cursor": next_cursor})
        return
    for entry in reversed(entries):  # oldest first, as a terminal reads
        sys.stdout.write(format_entry(entry) + "\n")


def _show_one(entry: LogEntry, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        emit_json_line(entry)
        return
    sys.stdout.write(format_entry(entry) + "\n")
    sys.stdout.flush()


def format_entry(entry: LogEntry) -> str:
    """`05:30:00.123 staging-shop-3f1c/0 ERROR shop.orders: message key=value`."""
    when = "-" if entry.time is None else _clock(entry.time)
    parts = [when, f"{entry.release}/{entry.replica}"]
    if entry.level is not None:
        parts.append(entry.level.upper())
    message = f"{entry.logger}: {entry.message}" if entry.logger else entry.message
    parts.append(message)
    parts.extend(f"{key}={_value(value)}" for key, value in entry.fields.items())
    return " ".join(parts)


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _value(value: Any) -> str:
    return value if isinstance(value, str) and " " not in value else json.dumps(value)
