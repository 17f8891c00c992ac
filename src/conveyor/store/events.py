"""Appending to and reading the event log. Nothing here updates or deletes an event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import sqlalchemy as sa

from conveyor.store import audit, redaction
from conveyor.store.records import EventKind, EventRecord
from conveyor.store.schema import events


def plain(value: Any) -> Any:
    """The JSON- and column-friendly form of a value (enums become their value)."""
    return value.value if isinstance(value, Enum) else value


def event_row(
    kind: EventKind,
    ts: float,
    *,
    run_id: int | None = None,
    job_id: str | None = None,
    state: str | None = None,
    commit_sha: str | None = None,
    actor: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "ts": ts,
        "kind": kind.value,
        "run_id": run_id,
        "job_id": job_id,
        "state": plain(state),
        "commit_sha": commit_sha,
        "actor": actor,
        "data": {key: plain(value) for key, value in (data or {}).items()},
    }


def append(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Append events built by `event_row`, in order, inside the caller's transaction;
    decisions (deploys, rollbacks, gates, flag changes) are chained into the audit log.
    Secrets in an event's data are masked first, so the audit chain hashes what is kept."""
    rows = [_masked(conn, row) for row in rows]
    if not any(audit.is_audited(row) for row in rows):
        if rows:
            conn.execute(sa.insert(events), list(rows))
        return
    for row in rows:
        append_one(conn, row)


def append_one(conn: sa.Connection, row: dict[str, Any]) -> int:
    """Append one event; returns its id."""
    row = _masked(conn, row)
    inserted = conn.execute(sa.insert(events).values(row)).inserted_primary_key
    assert inserted is not None
    event_id = int(inserted[0])
    if audit.is_audited(row):
        audit.record(conn, event_id, row)
    return event_id


def _masked(conn: sa.Connection, row: dict[str, Any]) -> dict[str, Any]:
    return redaction.fields(conn, row, ("data",))


def select(
    conn: sa.Connection, *, run_id: int | None, after_id: int, limit: int | None
) -> list[EventRecord]:
    query = sa.select(events).where(events.c.id > after_id).order_by(events.c.id)
    if run_id is not None:
        query = query.where(events.c.run_id == run_id)
    if limit is not None:
        query = query.limit(limit)
    return [event_from_row(row._mapping) for row in conn.execute(query)]


def event_from_row(row: sa.RowMapping) -> EventRecord:
    return EventRecord(
        id=row["id"],
        ts=row["ts"],
        kind=row["kind"],
        run_id=row["run_id"],
        job_id=row["job_id"],
        state=row["state"],
        commit_sha=row["commit_sha"],
        actor=row["actor"],
        data=row["data"],
    )
