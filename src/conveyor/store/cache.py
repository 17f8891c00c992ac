"""The job-cache table: which input key produced which outputs manifest."""

from __future__ import annotations

import sqlalchemy as sa

from conveyor.store import events
from conveyor.store.records import CacheEntry, EventKind
from conveyor.store.schema import cache_entries, runs


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


def previous(
    conn: sa.Connection, pipeline: str, job_id: str, branch: str | None
) -> tuple[CacheEntry, str | None] | None:
    """The entry a miss is best explained against, with the branch of the run that made it:
    the newest of a run on `branch` when there is one (another branch's newest entry would
    name its differences as this change's), else the newest of any branch."""
    query = (
        sa.select(cache_entries, runs.c.branch.label("run_branch"))
        .select_from(cache_entries.outerjoin(runs, runs.c.id == cache_entries.c.run_id))
        .where(cache_entries.c.pipeline == pipeline, cache_entries.c.job_id == job_id)
        .order_by(cache_entries.c.created_at.desc())
        .limit(1)
    )
    row = None
    if branch is not None:
        row = conn.execute(query.where(runs.c.branch == branch)).first()
    row = row or conn.execute(query).first()
    if row is None:
        return None
    return _entry_from_row(row._mapping), row._mapping["run_branch"]


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
