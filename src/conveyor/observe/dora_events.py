"""The event log's rows that DORA needs, read with one indexed query (`ix_events_kind_ts`),
and the commit time of each deploy's source run: plain tuples, no per-event objects."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import starmap

import sqlalchemy as sa

from conveyor.store.db import read_transaction
from conveyor.store.records import EventKind
from conveyor.store.reports import IMAGE_REPORT
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


@dataclass(frozen=True)
class Row:
    """One event, as far as DORA reads it: the fields of its data it needs, extracted by
    the database (decoding every event's whole JSON in Python costs more than the rest)."""

    ts: float
    kind: str
    run_id: int | None
    state: str | None
    deploy_id: int | None  # data.deploy_id
    release: str | None  # data.release (deploy.started)
    origin: str | None  # data.from (a rollback's release)
    verdict: str | None  # data.verdict (release.decision)
    digest: str | None  # data.digest (deploy.started)
    approval_run: int | None  # data.approval.run_id (deploy.started)
    incident: str | None  # data.incident (incident.*)
    weights: object  # data.weights, decoded (traffic.shifted); checked by the reader


def read_rows(store: Store, environment: str, since: float, until: float) -> list[Row]:
    """The environment's deploy, traffic, rollback, verdict, kill-switch and incident
    events with `since <= ts <= until`, in the order they were appended."""
    kinds = [kind.value for kind in DORA_KINDS]
    # `kind >= 'incident.' AND kind < 'incident/'` is `LIKE 'incident.%'` as an index range.
    incident = sa.and_(events.c.kind >= INCIDENT_PREFIX, events.c.kind < INCIDENT_PREFIX[:-1] + "/")
    data = events.c.data
    query = (
        sa.select(
            events.c.ts,
            events.c.kind,
            events.c.run_id,
            events.c.state,
            data["deploy_id"].as_integer().label("deploy_id"),
            data["release"].as_string().label("release"),
            data["from"].as_string().label("origin"),
            data["verdict"].as_string().label("verdict"),
            data["digest"].as_string().label("digest"),
            data[("approval", "run_id")].as_integer().label("approval_run"),
            data["incident"].as_string().label("incident"),
            data["weights"].as_json().label("weights"),  # the only one decoded in Python
        )
        .where(
            sa.or_(
                sa.and_(events.c.kind.in_(kinds), events.c.ts.between(since, until)),
                sa.and_(incident, events.c.ts.between(since, until)),
            ),
            data["environment"].as_string() == environment,
        )
        .order_by(events.c.id)
    )
    with read_transaction(store.engine) as conn:
        return list(starmap(Row, conn.execute(query)))  # columns in Row's order


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
