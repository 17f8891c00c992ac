"""The event log's rows that DORA needs, read with one indexed query (`ix_events_kind_ts`),
and the commit time of each deploy's source run: plain tuples, no per-event objects."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from conveyor.store.db import read_transaction
from conveyor.store.records import EventKind
from conveyor.store.schema import events, reports, runs
from conveyor.store.store import Store

# The moments DORA is made of (store/records.py EventKind); incidents are any `incident.*`.
DORA_KINDS = (
    EventKind.DEPLOY_STARTED,
    EventKind.DEPLOY_FINISHED,
    EventKind.TRAFFIC_SHIFTED,
    EventKind.ROLLBACK,
    EventKind.RELEASE_DECISION,
    EventKind.FLAG_KILLED,
)
INCIDENT_PREFIX = "incident."
IMAGE_REPORT = "image"  # what build-image publishes: {repository, digest, tags}


@dataclass(frozen=True)
class Row:
    """One event, as far as DORA reads it."""

    ts: float
    kind: str
    run_id: int | None
    state: str | None
    data: Mapping[str, Any]


def read_rows(store: Store, environment: str, since: float, until: float) -> list[Row]:
    """The environment's deploy, traffic, rollback, verdict, kill-switch and incident
    events with `since <= ts <= until`, in the order they were appended."""
    kinds = [kind.value for kind in DORA_KINDS]
    # `kind >= 'incident.' AND kind < 'incident/'` is `LIKE 'incident.%'` as an index range.
    incident = sa.and_(events.c.kind >= INCIDENT_PREFIX, events.c.kind < INCIDENT_PREFIX[:-1] + "/")
    query = (
        sa.select(
            events.c.ts,
            events.c.kind,
            events.c.run_id,
            events.c.state,
            sa.cast(events.c.data, sa.Text),  # decoded here once, not by the JSON type
        )
        .where(
            sa.or_(
                sa.and_(events.c.kind.in_(kinds), events.c.ts.between(since, until)),
                sa.and_(incident, events.c.ts.between(since, until)),
            ),
            events.c.data["environment"].as_string() == environment,
        )
        .order_by(events.c.id)
    )
    loads = json.loads
    with read_transaction(store.engine) as conn:
        return [
            Row(ts, kind, run_id, state, loads(data) if isinstance(data, str) else data)
            for ts, kind, run_id, state, data in conn.execute(query)
        ]


def commit_times(store: Store, run_ids: Iterable[int]) -> dict[int, float]:
    """Each run's commit time (the committer time its run record holds), where known."""
    wanted = sorted(set(run_ids))
    found: dict[int, float] = {}
    with read_transaction(store.engine) as conn:
        for start in range(0, len(wanted), 500):  # bounded IN lists
            chunk = wanted[start : start + 500]
            query = sa.select(runs.c.id, runs.c.committed_at).where(
                runs.c.id.in_(chunk), runs.c.committed_at.is_not(None)
            )
            found.update({int(run_id): float(ts) for run_id, ts in conn.execute(query)})
    return found


def image_runs(store: Store, digests: Iterable[str]) -> dict[str, int]:
    """The newest run that built each image digest (for deploys made by hand)."""
    wanted = sorted(set(digests))
    found: dict[str, int] = {}
    if not wanted:
        return found
    digest = reports.c.summary["digest"].as_string()
    with read_transaction(store.engine) as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = (
                sa.select(digest, reports.c.run_id)
                .where(reports.c.kind == IMAGE_REPORT, digest.in_(chunk))
                .order_by(reports.c.id)
            )
            found.update({str(d): int(run_id) for d, run_id in conn.execute(query)})
    return found
