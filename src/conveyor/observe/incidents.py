"""Incidents: what an alert outside the bake window opens (and what an automatic rollback
opens already mitigated), with a timeline (who, when, note), the suspect releases deployed
shortly before the alert began with their commits, the flag changes of the same window,
time to detect and time to restore. Resolving one files a follow-up requirement.

    opened -> acknowledged -> mitigated -> resolved   (forward only; steps may be skipped)

Every change is a row of `incident_timeline` and an event (incident.opened, .state, .note).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.observe import requirements
from conveyor.service.pages import Page, clamp_limit, decode_cursor, page_of
from conveyor.service.project import Project
from conveyor.store import events as event_log
from conveyor.store.db import read_transaction, serialize_on, write_transaction
from conveyor.store.records import EventKind
from conveyor.store.schema import events, incident_timeline, incidents
from conveyor.store.store import Store

NOTE_LIMIT = 4000  # characters of a person's note kept


class IncidentState(StrEnum):
    OPENED = "opened"
    ACKNOWLEDGED = "acknowledged"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"


ORDER = tuple(IncidentState)
OPEN_STATES = tuple(s.value for s in ORDER if s is not IncidentState.RESOLVED)


@dataclass(frozen=True)
class TimelineEntry:
    ts: float
    entry: str  # an IncidentState value, "alert" or "note"
    actor: str
    note: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Incident:
    id: int
    environment: str
    state: IncidentState
    title: str
    started_at: float  # when the first alert began
    opened_at: float
    acknowledged_at: float | None
    mitigated_at: float | None
    resolved_at: float | None
    suspects: list[dict[str, Any]]  # releases deployed in the window, newest first
    flag_changes: list[dict[str, Any]]
    time_to_detect: float | None  # alert start - the newest suspect's deploy start
    time_to_restore: float | None  # mitigated - alert start
    requirement: dict[str, Any] | None  # the follow-up filed when it was resolved
    timeline: list[TimelineEntry] = field(default_factory=list)


# --- opening (inside the alert intake's transaction) -------------------------------------


@dataclass(frozen=True)
class Suspects:
    releases: list[dict[str, Any]]
    flag_changes: list[dict[str, Any]]

    def detect_after(self, started_at: float) -> float | None:
        if not self.releases:
            return None
        return max(0.0, started_at - float(self.releases[0]["deployed_at"]))


def find_suspects(
    project: Project, store: Store, environment: str, started_at: float, window: float
) -> Suspects:
    """The deploys to `environment` that began in [started_at - window, started_at] (the
    newest first) with their commits, and the flag changes of the same window."""
    from conveyor.service.release_record import release_commits

    since = started_at - window
    found = [
        d
        for d in store.ledger.deploys.of_environment(environment)
        if since <= d.started_at <= started_at
    ]
    releases = []
    for deploy in reversed(found):
        try:
            commits = release_commits(project, store, deploy)
        except ConveyorError as error:  # a repository gone: the suspect without commits
            commits = [{"note": error.message}]
        releases.append(
            {
                "deploy_id": deploy.id,
                "release_id": deploy.release_id,
                "image": f"{deploy.repository}@{deploy.digest}",
                "state": deploy.state.value,
                "deployed_at": deploy.started_at,
                "deployed_by": deploy.actor,
                "run_id": deploy.run_id,
                "commit": commits[0].get("sha") if commits else None,
                "commits": commits,
            }
        )
    return Suspects(releases, _flag_changes(store, environment, since, started_at))


def _flag_changes(
    store: Store, environment: str, since: float, until: float
) -> list[dict[str, Any]]:
    kinds = (EventKind.FLAG_CHANGED.value, EventKind.FLAG_KILLED.value)
    query = (
        sa.select(events)
        .where(events.c.kind.in_(kinds), events.c.ts >= since, events.c.ts <= until)
        .order_by(events.c.id)
    )
    with read_transaction(store.engine) as conn:
        rows = [event_log.event_from_row(row._mapping) for row in conn.execute(query)]
    return [
        {
            "ts": event.ts,
            "kind": event.kind,
            "flag": event.data.get("flag"),
            "change": event.data.get("change"),
            "actor": event.actor,
            "event_id": event.id,
        }
        for event in rows
        if event.data.get("environment") == environment
    ]


def open_incident_id(
    conn: sa.Connection, environment: str, opened_after: float | None = None
) -> int | None:
    """The environment's newest open (unresolved) incident, if any (opened after
    `opened_after`, when given)."""
    query = (
        sa.select(incidents.c.id)
        .where(incidents.c.environment == environment, incidents.c.state.in_(OPEN_STATES))
        .order_by(incidents.c.id.desc())
        .limit(1)
    )
    if opened_after is not None:
        query = query.where(incidents.c.opened_at >= opened_after)
    row = conn.execute(query).first()
    return int(row[0]) if row else None


def open_incident(
    conn: sa.Connection,
    *,
    environment: str,
    title: str,
    started_at: float,
    suspects: Suspects,
    actor: str,
    alert: Mapping[str, Any],
) -> int:
    """A new incident in `opened`, in the caller's transaction."""
    now = time.time()
    inserted = conn.execute(
        sa.insert(incidents).values(
            environment=environment,
            state=IncidentState.OPENED.value,
            title=title[:300],
            started_at=started_at,
            opened_at=now,
            suspects=suspects.releases,
            flag_changes=suspects.flag_changes,
            time_to_detect=suspects.detect_after(started_at),
        )
    ).inserted_primary_key
    assert inserted is not None
    incident_id = int(inserted[0])
    data = {
        "incident": incident_id,
        "environment": environment,
        "alert": dict(alert),
        "suspects": [s["release_id"] for s in suspects.releases],
        "time_to_detect": suspects.detect_after(started_at),
    }
    _add_entry(
        conn, incident_id, IncidentState.OPENED.value, actor=actor, note=title, data=data, ts=now
    )
    event_log.append(
        conn, [event_log.event_row(EventKind.INCIDENT_OPENED, now, actor=actor, data=data)]
    )
    return incident_id


def add_alert(
    conn: sa.Connection, incident_id: int, actor: str, note: str, alert: Mapping[str, Any]
) -> None:
    """An alert joined the incident (or one of its alerts resolved)."""
    now = time.time()
    data = {"incident": incident_id, "alert": dict(alert)}
    _add_entry(conn, incident_id, "alert", actor=actor, note=note, data=data, ts=now)
    row = event_log.event_row(
        EventKind.INCIDENT_NOTE, now, actor=actor, data={**data, "note": note}
    )
    event_log.append(conn, [row])


def _add_entry(
    conn: sa.Connection,
    incident_id: int,
    entry: str,
    *,
    actor: str,
    note: str | None,
    data: Mapping[str, Any],
    ts: float,
) -> None:
    conn.execute(
        sa.insert(incident_timeline).values(
            incident_id=incident_id, ts=ts, entry=entry, actor=actor, note=note, data=dict(data)
        )
    )


# --- transitions (people, and the automatic rollback) ------------------------------------


def acknowledge(store: Store, incident_id: int, actor: str, note: str | None = None) -> Incident:
    return _move(store, incident_id, IncidentState.ACKNOWLEDGED, actor=actor, note=note)


def mitigate(
    store: Store,
    incident_id: int,
    actor: str,
    note: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> Incident:
    """Traffic is healthy again (a rollback, a kill switch, a fix): time to restore is
    recorded from the alert's start."""
    return _move(store, incident_id, IncidentState.MITIGATED, actor=actor, note=note, data=data)


def mitigated(
    store: Store, incident_id: int, actor: str, note: str, data: Mapping[str, Any]
) -> None:
    """An automatic mitigation (a rollback): the incident becomes mitigated, or, if it
    already is (or is resolved), the mitigation is noted on its timeline."""
    with write_transaction(store.engine) as conn:
        serialize_on(conn, incidents)
        incident = _read(conn, incident_id)
        if ORDER.index(incident.state) < ORDER.index(IncidentState.MITIGATED):
            _move_in(conn, incident, IncidentState.MITIGATED, actor=actor, note=note, data=data)
            return
        now = time.time()
        _add_entry(conn, incident_id, "note", actor=actor, note=note, data=data, ts=now)
        row = {**data, "incident": incident_id, "note": note}
        event_log.append(
            conn, [event_log.event_row(EventKind.INCIDENT_NOTE, now, actor=actor, data=row)]
        )


def resolve(
    project: Project, store: Store, incident_id: int, actor: str, note: str | None = None
) -> Incident:
    """Resolved, and its follow-up requirement filed (observe/requirements.py)."""
    incident = get_incident(store, incident_id)
    _check_forward(incident, IncidentState.RESOLVED)
    filed = requirements.file_requirement(
        project,
        store,
        title=f"Follow up incident {incident.id}: {incident.title}"[:200],
        body=follow_up_body(incident, note),
        labels=("incident", incident.environment),
        source=f"incident:{incident.id}",
        actor=actor,
    )
    requirement = {"key": filed.key, "title": filed.title, "location": filed.location}
    return _move(
        store,
        incident_id,
        IncidentState.RESOLVED,
        actor=actor,
        note=note,
        data={"requirement": requirement},
    )


def follow_up_body(incident: Incident, note: str | None) -> str:
    """The requirement's text: what happened, the suspects and their commits."""
    lines = [
        f"Incident {incident.id} in {incident.environment}: {incident.title}",
        "",
        f"- time to detect: {_seconds(incident.time_to_detect)}",
        f"- time to restore: {_seconds(incident.time_to_restore)}",
    ]
    for suspect in incident.suspects:
        lines.append(f"- suspect release {suspect['release_id']} ({suspect['image']})")
        for commit in suspect.get("commits", []):
            sha = str(commit.get("sha") or "")[:12]
            lines.append(f"  - {sha} {commit.get('subject') or commit.get('note') or ''}".rstrip())
    for change in incident.flag_changes:
        lines.append(f"- flag {change['flag']} {change['change']} by {change['actor']}")
    if note:
        lines += ["", note]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} s"


def _check_forward(incident: Incident, target: IncidentState) -> None:
    if ORDER.index(target) <= ORDER.index(incident.state):
        raise ConveyorError(
            f"incident {incident.id} is {incident.state.value}: it cannot become {target.value}",
            hint="an incident moves forward only: opened, acknowledged, mitigated, resolved",
        )


def _move(
    store: Store,
    incident_id: int,
    target: IncidentState,
    *,
    actor: str,
    note: str | None,
    data: Mapping[str, Any] | None = None,
) -> Incident:
    with write_transaction(store.engine) as conn:
        serialize_on(conn, incidents)
        _move_in(conn, _read(conn, incident_id), target, actor=actor, note=note, data=data)
    return get_incident(store, incident_id)


def _move_in(
    conn: sa.Connection,
    incident: Incident,
    target: IncidentState,
    *,
    actor: str,
    note: str | None,
    data: Mapping[str, Any] | None,
) -> None:
    _check_forward(incident, target)
    note = note[:NOTE_LIMIT] if note else None
    now = time.time()
    values: dict[str, Any] = {f"{target.value}_at": now, "state": target.value}
    restored = target in (IncidentState.MITIGATED, IncidentState.RESOLVED)
    if restored and incident.mitigated_at is None:  # resolved without a mitigation first
        values["time_to_restore"] = max(0.0, now - incident.started_at)
        values["mitigated_at"] = now
    if data and "requirement" in data:
        values["requirement"] = data["requirement"]
    conn.execute(sa.update(incidents).where(incidents.c.id == incident.id).values(values))
    payload = {"incident": incident.id, "environment": incident.environment, **(data or {})}
    _add_entry(conn, incident.id, target.value, actor=actor, note=note, data=payload, ts=now)
    row = event_log.event_row(
        EventKind.INCIDENT_STATE,
        now,
        state=target.value,
        actor=actor,
        data={**payload, "note": note},
    )
    event_log.append(conn, [row])


# --- reading -----------------------------------------------------------------------------


def get_incident(store: Store, incident_id: int) -> Incident:
    with read_transaction(store.engine) as conn:
        return _read(conn, incident_id)


def _read(conn: sa.Connection, incident_id: int) -> Incident:
    row = conn.execute(sa.select(incidents).where(incidents.c.id == incident_id)).first()
    if row is None:
        raise NotFoundError(
            f"no incident {incident_id}", hint="`conveyor incidents list` lists them"
        )
    entries = conn.execute(
        sa.select(incident_timeline)
        .where(incident_timeline.c.incident_id == incident_id)
        .order_by(incident_timeline.c.id)
    )
    return _incident(row._mapping, [_entry(e._mapping) for e in entries])


def list_incidents(
    store: Store,
    *,
    environment: str | None = None,
    state: Sequence[str] = (),
    limit: int | None = None,
    cursor: str | None = None,
) -> Page[Incident]:
    """Newest first, without their timelines."""
    count = clamp_limit(limit)
    query = sa.select(incidents).order_by(incidents.c.id.desc()).limit(count + 1)
    before = decode_cursor(cursor)
    if before is not None:
        query = query.where(incidents.c.id < before)
    if environment is not None:
        query = query.where(incidents.c.environment == environment)
    if state:
        query = query.where(incidents.c.state.in_(list(state)))
    with read_transaction(store.engine) as conn:
        found = [_incident(row._mapping, []) for row in conn.execute(query)]
    return page_of(found, count, lambda incident: incident.id)


def _incident(row: sa.RowMapping, timeline: list[TimelineEntry]) -> Incident:
    return Incident(
        id=row["id"],
        environment=row["environment"],
        state=IncidentState(row["state"]),
        title=row["title"],
        started_at=row["started_at"],
        opened_at=row["opened_at"],
        acknowledged_at=row["acknowledged_at"],
        mitigated_at=row["mitigated_at"],
        resolved_at=row["resolved_at"],
        suspects=list(row["suspects"] or []),
        flag_changes=list(row["flag_changes"] or []),
        time_to_detect=row["time_to_detect"],
        time_to_restore=row["time_to_restore"],
        requirement=row["requirement"],
        timeline=timeline,
    )


def _entry(row: sa.RowMapping) -> TimelineEntry:
    return TimelineEntry(
        ts=row["ts"], entry=row["entry"], actor=row["actor"], note=row["note"], data=row["data"]
    )
