"""The reports table: evidence blobs a job published, found again by run and kind."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from conveyor.store import events, redaction
from conveyor.store.records import EventKind, ReportRecord
from conveyor.store.schema import reports

# What build-image publishes ({repository, digest, tags}): how a digest's runs are found.
IMAGE_REPORT = "image"


def add(
    conn: sa.Connection,
    *,
    run_id: int,
    job_id: str,
    kind: str,
    digest: str,
    summary: Mapping[str, Any],
    now: float,
) -> None:
    summary = redaction.of(conn).value(dict(summary))
    values = {
        "run_id": run_id,
        "job_id": job_id,
        "kind": kind,
        "digest": digest,
        "summary": dict(summary),
        "created_at": now,
    }
    conn.execute(sa.insert(reports).values(values))
    event = events.event_row(
        EventKind.REPORT_ADDED,
        now,
        run_id=run_id,
        job_id=job_id,
        data={"kind": kind, "digest": digest, "summary": dict(summary)},
    )
    events.append(conn, [event])


def of_run(conn: sa.Connection, run_id: int, kind: str | None = None) -> list[ReportRecord]:
    query = sa.select(reports).where(reports.c.run_id == run_id)
    if kind is not None:
        query = query.where(reports.c.kind == kind)
    rows = conn.execute(query.order_by(reports.c.id))
    return [
        ReportRecord(
            run_id=r.run_id,
            job_id=r.job_id,
            kind=r.kind,
            digest=r.digest,
            summary=r.summary,
            created_at=r.created_at,
        )
        for r in rows
    ]


def runs_with(conn: sa.Connection, kind: str, key: str, value: str) -> list[int]:
    """The runs that published a report of `kind` whose summary has `key` = `value` (the
    runs that built an image digest), oldest first."""
    query = (
        sa.select(reports.c.run_id)
        .where(reports.c.kind == kind, reports.c.summary[key].as_string() == value)
        .distinct()
        .order_by(reports.c.run_id)
    )
    return [int(run_id) for run_id in conn.execute(query).scalars()]
