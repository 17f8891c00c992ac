"""The job-cache table: which input key produced which outputs manifest."""

from __future__ import annotations

import sqlalchemy as sa

from conveyor.store import events
from conveyor.store.records import CacheEntry, EventKind
from conveyor.store.schema import cache_entries


def get(conn: sa.Connection, key: str) -> CacheEntry | None:
    row = conn.execute(sa.select(cache_entries).where(cache_entries.c.key == key)).first()
    return _entry_from_row(row._mapping) if row is not None else None


def latest(conn: sa.Connection, pipeline: str, job_id: str) -> CacheEntry | None:
    row = conn.execute(
        sa.select(cache_entries)
        .where(cache_entries.c.pipeline == pipeline, cache_entries.c.job_id == job_id)
        .order_by(cache_entries.c.created_at.desc())
        .limit(1)
    ).first()
    return _entry_from_row(row._mapping) if row is not None else None


def put(conn: sa.Connection, entry: CacheEntry, now: float) -> None:
    """Insert or replace the entry (portable upsert: the write transaction is serialized)."""
    values = {
        "pipeline": entry.pipeline,
        "job_id": entry.job_id,
        "run_id": entry.run_id,
        "created_at": entry.created_at,
        "outputs_manifest": entry.outputs_manifest,
        "components": dict(entry.components),
    }
    updated = conn.execute(
        sa.update(cache_entries).where(cache_entries.c.key == entry.key).values(values)
    )
    if updated.rowcount == 0:
        conn.execute(sa.insert(cache_entries).values(key=entry.key, **values))
    event = events.event_row(
        EventKind.CACHE_PUT,
        now,
        run_id=entry.run_id,
        job_id=entry.job_id,
        data={"key": entry.key, "pipeline": entry.pipeline, "outputs": entry.outputs_manifest},
    )
    events.append(conn, [event])


def _entry_from_row(row: sa.RowMapping) -> CacheEntry:
    return CacheEntry(
        key=row["key"],
        pipeline=row["pipeline"],
        job_id=row["job_id"],
        run_id=row["run_id"],
        outputs_manifest=row["outputs_manifest"],
        components=row["components"],
        created_at=row["created_at"],
    )
