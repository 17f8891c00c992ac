"""One path for every alert, whether Conveyor's own SLO evaluator raised it or a real
Alertmanager delivered it: deduplicated by fingerprint, checked against the environments
and releases the store knows, then a rollback (inside the bake window after a release) or
an incident. Every outcome is recorded as an event."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from conveyor.errors import ConveyorError
from conveyor.observe import incidents
from conveyor.service.project import Project
from conveyor.spec.environments import ENVIRONMENT_NAME_PATTERN, Environment
from conveyor.states import DeployState
from conveyor.store import events as event_log
from conveyor.store.db import read_transaction, serialize_on, write_transaction
from conveyor.store.ledger import EnvironmentRecord
from conveyor.store.records import EventKind
from conveyor.store.schema import alerts
from conveyor.store.store import Store


class AlertSource(StrEnum):
    CONVEYOR = "conveyor"  # the built-in SLO evaluator (observe/slo.py)
    ALERTMANAGER = "alertmanager"  # a webhook delivery (payload version 4)


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Alert:
    """One alert, in Alertmanager's terms: `labels` identify it (`environment` is required,
    `release` optional, `alertname`, `severity`, `slo`...), `fingerprint` deduplicates it
    (per environment; letters, digits and `._:-`, at most 128)."""

    source: AlertSource
    status: AlertStatus
    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: float = 0.0  # unix seconds
    ends_at: float | None = None


class AlertOutcome(StrEnum):
    ROLLED_BACK = "rolled-back"  # inside the bake window: back to the warm release
    INCIDENT = "incident"  # outside it: an incident opened (or joined)
    DUPLICATE = "duplicate"  # the same fingerprint already acted on
    RESOLVED = "resolved"  # a resolved notification, recorded
    REFUSED = "refused"  # unknown environment or release, or malformed: recorded, no action


ACTOR = "conveyor-alerts"  # who the automatic rollbacks and incidents are recorded as
MAX_LABELS = 64
MAX_KEY = 128
MAX_LABEL_VALUE = 1024
MAX_ANNOTATION_VALUE = 4096
MAX_TOTAL = 16384  # characters of labels and annotations together: each is kept in events
MAX_FINGERPRINT = 128
DUPLICATE_EVENT_EVERY = 60.0  # seconds: repeats of an alert between are only counted
_ENVIRONMENT = re.compile(ENVIRONMENT_NAME_PATTERN)
_FINGERPRINT = re.compile(r"^[A-Za-z0-9._:-]+$")
_ACTED = (AlertOutcome.ROLLED_BACK.value, AlertOutcome.INCIDENT.value)


@dataclass(frozen=True)
class AlertReceipt:
    """What became of one alert, as the webhook answers and the event records it."""

    outcome: AlertOutcome
    reason: str
    fingerprint: str
    environment: str | None = None
    incident: int | None = None
    rollback: dict[str, Any] | None = None  # from, to, switch_seconds
    quiet: bool = False  # a repeated duplicate: counted, not recorded as an event again


def receive(project: Project, store: Store, alert: Alert) -> AlertOutcome:
    """The one intake: every outcome is recorded as an alert.received event."""
    return receive_alert(project, store, alert).outcome


def receive_alert(project: Project, store: Store, alert: Alert) -> AlertReceipt:
    """`receive`, with the reason, the incident and the rollback it led to."""
    now = time.time()
    receipt = _receive(project, store, alert, now)
    if not receipt.quiet:
        _record(store, alert, receipt, now)
    return receipt


def _refused(alert: Alert, reason: str) -> AlertReceipt:
    environment = alert.labels.get("environment") if isinstance(alert.labels, Mapping) else None
    return AlertReceipt(
        AlertOutcome.REFUSED,
        reason,
        str(alert.fingerprint)[:MAX_FINGERPRINT],
        environment if isinstance(environment, str) else None,
    )


def _receive(project: Project, store: Store, alert: Alert, now: float) -> AlertReceipt:
    known = _known(project, store, alert)
    if isinstance(known, str):
        return _refused(alert, known)
    spec, record = known
    if alert.status is AlertStatus.RESOLVED:
        return _resolved(store, alert, record.name, now)
    return _firing(Intake(project, store, alert, spec, record, now))


def _known(
    project: Project, store: Store, alert: Alert
) -> tuple[Environment, EnvironmentRecord] | str:
    """The alert's environment (declared and deployed), or why it is refused."""
    from conveyor.service.environments import environments_of

    problem = malformed(alert)
    if problem is not None:
        return problem
    name = alert.labels["environment"]
    try:
        spec = environments_of(project).get(name)
    except ConveyorError as error:  # conveyor.yml unreadable: refused, never a crash
        return error.message
    record = store.ledger.environments.get(name) if spec is not None else None
    if spec is None or record is None:
        return f"unknown environment {name!r}: " + (
            "not in conveyor.yml" if spec is None else "never deployed"
        )
    release = alert.labels.get("release")
    if release is not None and store.ledger.releases.get(release, name) is None:
        return f"unknown release {release!r} in {name}"
    return spec, record


def malformed(alert: Alert) -> str | None:
    """Why an alert cannot be acted on as it is, or None."""
    problem = _fingerprint_problem(alert.fingerprint) or _sizes_problem(alert)
    if problem is not None:
        return problem
    environment = alert.labels.get("environment")
    if environment is None:
        return "the alert has no `environment` label"
    if not _ENVIRONMENT.match(environment):
        return f"{environment[:40]!r} is not an environment name"
    return None


def _fingerprint_problem(fingerprint: object) -> str | None:
    if not isinstance(fingerprint, str) or not fingerprint:
        return "the alert has no fingerprint"
    if len(fingerprint) > MAX_FINGERPRINT or not _FINGERPRINT.match(fingerprint):
        return "the fingerprint is not a short identifier"
    return None


def _sizes_problem(alert: Alert) -> str | None:
    for what, values, longest in (
        ("labels", alert.labels, MAX_LABEL_VALUE),
        ("annotations", alert.annotations, MAX_ANNOTATION_VALUE),
    ):
        problem = _mapping_problem(what, values, longest)
        if problem is not None:
            return problem
    sizes = [len(k) + len(v) for m in (alert.labels, alert.annotations) for k, v in m.items()]
    if sum(sizes) > MAX_TOTAL:
        return f"the labels and annotations are larger than {MAX_TOTAL} characters"
    return None


def _mapping_problem(what: str, values: object, longest: int) -> str | None:
    if not isinstance(values, Mapping):
        return f"{what} must be an object of strings"
    if len(values) > MAX_LABELS:
        return f"more than {MAX_LABELS} {what}"
    for key, value in values.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return f"{what} must be an object of strings"
        if len(key) > MAX_KEY or len(value) > longest:
            return f"a key or value of the {what} is too long"
    return None


def started_at(alert: Alert, now: float) -> float:
    """When the alert began: its own start, never in the future (clocks drift)."""
    return min(alert.starts_at, now) if alert.starts_at > 0 else now


# --- resolved ------------------------------------------------------------------------------


def _resolved(store: Store, alert: Alert, environment: str, now: float) -> AlertReceipt:
    with write_transaction(store.engine) as conn:
        serialize_on(conn, alerts)
        active = _active(conn, alert.fingerprint, environment)
        conn.execute(
            sa.update(alerts)
            .where(
                alerts.c.fingerprint == alert.fingerprint,
                alerts.c.environment == environment,
                alerts.c.resolved_at.is_(None),
            )
            .values(resolved_at=now)
        )
        incident = active["incident_id"] if active else None
        if incident is not None:
            note = f"{_title(alert)} resolved"
            incidents.add_alert(conn, incident, ACTOR, note, _evidence(alert))
    reason = "recorded" if active else "nothing had been done for it: recorded"
    return AlertReceipt(AlertOutcome.RESOLVED, reason, alert.fingerprint, environment, incident)


def _active(conn: sa.Connection, fingerprint: str, environment: str) -> sa.RowMapping | None:
    """The unresolved alert with this fingerprint that was acted on, if any."""
    row = conn.execute(
        sa.select(alerts)
        .where(alerts.c.fingerprint == fingerprint, alerts.c.environment == environment)
        .where(alerts.c.resolved_at.is_(None))
        .where(alerts.c.outcome.in_(_ACTED))
        .order_by(alerts.c.id.desc())
        .limit(1)
    ).first()
    return row._mapping if row else None


# --- firing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Intake:
    """One firing alert on a known environment, being decided."""

    project: Project
    store: Store
    alert: Alert
    spec: Environment
    record: EnvironmentRecord
    now: float

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def start(self) -> float:
        return started_at(self.alert, self.now)

    @functools.cached_property
    def live_since(self) -> float | None:
        """When the deploy that made the live release live began."""
        live = self.record.live_release
        deploys = self.store.ledger.deploys.of_environment(self.name, DeployState.SUCCEEDED)
        made_live = [d.started_at for d in deploys if d.release_id == live]
        return made_live[-1] if made_live else None


@dataclass(frozen=True)
class Decision:
    rollback: bool
    reason: str
    live: str | None = None
    warm: str | None = None
    deployed_at: float = 0.0  # when the deploy that made `live` live began


def decide(intake: Intake) -> Decision:
    """Roll back only when the alert began inside the bake window after the live release
    was deployed, names no other release, and there is a warm release to go back to."""
    blocked = _blocked(intake)
    if blocked is not None:
        return Decision(False, blocked)
    return _timed(intake)


def _blocked(intake: Intake) -> str | None:
    name, live = intake.name, intake.record.live_release
    if not intake.spec.alerts.rollback:
        return f"automatic rollback is off for {name} (alerts.rollback)"
    if intake.store.ledger.deploys.of_environment(name, DeployState.IN_PROGRESS):
        return f"a deploy to {name} is in progress: its own analysis judges it"
    if live is None:
        return f"nothing is live in {name}"
    named = intake.alert.labels.get("release")
    if named is not None and named != live:
        return f"the alert names {named}, not the live release {live}"
    return None


def _timed(intake: Intake) -> Decision:
    live, warm, start = intake.record.live_release, intake.record.warm_release, intake.start
    since, bake = intake.live_since, intake.spec.alerts.bake
    if since is None:
        return Decision(False, f"{live} was not made live by a deploy")
    if start < since:
        return Decision(False, f"the alert began before {live} was deployed")
    if start > since + bake:
        return Decision(
            False,
            f"{live} was deployed {start - since:.0f} s before the alert began, "
            f"after its bake window of {bake:.0f} s",
        )
    if warm is None:
        return Decision(False, f"{intake.name} has no warm release to roll back to")
    after = f"{start - since:.1f} s after {live} was deployed (bake window {bake:.0f} s)"
    return Decision(True, f"the alert began {after}", live, warm, since)


def _firing(intake: Intake) -> AlertReceipt:
    alert, name = intake.alert, intake.name
    decision = decide(intake)
    suspects = None
    if _joinable_incident(intake) is None:  # read before the write lock: git is slow
        suspects = _suspects(intake)
    with write_transaction(intake.store.engine) as conn:
        serialize_on(conn, alerts)
        acted = _active(conn, alert.fingerprint, name)
        if acted is not None:
            return _duplicate(conn, acted, intake)
        claimed = _rollback_claim(conn, name, decision) if decision.rollback else None
        if claimed is not None:  # an alert storm: the first alert rolls back, once
            joined = f"joined the rollback of {decision.live} (alert {claimed['id']})"
            decision = Decision(False, joined)
        incident = _incident_for(conn, intake, suspects)
        outcome = AlertOutcome.ROLLED_BACK if decision.rollback else AlertOutcome.INCIDENT
        alert_id = _insert(conn, intake, decision, outcome, incident)
    if not decision.rollback:
        return AlertReceipt(outcome, decision.reason, alert.fingerprint, name, incident)
    return _roll_back(intake, decision, incident, alert_id)


def _duplicate(conn: sa.Connection, acted: sa.RowMapping, intake: Intake) -> AlertReceipt:
    """Counted on the alert acted on; recorded as an event at most once a minute per alert
    (an evaluator may repeat a firing alert every second)."""
    noted = acted["duplicate_noted_at"]
    quiet = noted is not None and intake.now - noted < DUPLICATE_EVENT_EVERY
    values: dict[str, Any] = {"duplicates": acted["duplicates"] + 1}
    if not quiet:
        values["duplicate_noted_at"] = intake.now
    conn.execute(sa.update(alerts).where(alerts.c.id == acted["id"]).values(values))
    reason = (
        f"already acted on: {acted['outcome']} (alert {acted['id']}, "
        f"repeated {values['duplicates']} times)"
    )
    return AlertReceipt(
        AlertOutcome.DUPLICATE,
        reason,
        intake.alert.fingerprint,
        intake.name,
        acted["incident_id"],
        quiet=quiet,
    )


def _suspects(intake: Intake) -> incidents.Suspects:
    bake = intake.spec.alerts.bake
    return incidents.find_suspects(intake.project, intake.store, intake.name, intake.start, bake)


def _joinable_incident(intake: Intake, conn: sa.Connection | None = None) -> int | None:
    """The environment's open incident, unless it opened before the live release was
    deployed (a new release is a new suspect: a new incident)."""
    if conn is None:
        with read_transaction(intake.store.engine) as reading:
            return _joinable_incident(intake, reading)
    return incidents.open_incident_id(conn, intake.name, opened_after=intake.live_since)


def _rollback_claim(
    conn: sa.Connection, environment: str, decision: Decision
) -> sa.RowMapping | None:
    """An alert that already rolled back this deploy of the live release (the same
    release deployed again later may be rolled back again)."""
    row = conn.execute(
        sa.select(alerts)
        .where(
            alerts.c.environment == environment,
            alerts.c.release_id == decision.live,
            alerts.c.outcome == AlertOutcome.ROLLED_BACK.value,
            alerts.c.received_at >= decision.deployed_at,
        )
        .limit(1)
    ).first()
    return row._mapping if row else None


def _incident_for(conn: sa.Connection, intake: Intake, suspects: incidents.Suspects | None) -> int:
    """The environment's open incident (the alert joins it), or a new one."""
    alert = intake.alert
    found = _joinable_incident(intake, conn)
    if found is not None:
        incidents.add_alert(conn, found, ACTOR, f"{_title(alert)} joined", _evidence(alert))
        return found
    return incidents.open_incident(
        conn,
        environment=intake.name,
        title=f"{_title(alert)} in {intake.name}",
        started_at=intake.start,
        suspects=suspects if suspects is not None else _suspects(intake),
        actor=ACTOR,
        alert=_evidence(alert),
    )


def _insert(
    conn: sa.Connection,
    intake: Intake,
    decision: Decision,
    outcome: AlertOutcome,
    incident: int,
) -> int:
    alert = intake.alert
    inserted = conn.execute(
        sa.insert(alerts).values(
            fingerprint=alert.fingerprint,
            environment=intake.name,
            release_id=decision.live,
            source=alert.source.value,
            alertname=alert.labels.get("alertname"),
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            starts_at=intake.start,
            received_at=intake.now,
            outcome=outcome.value,
            reason=decision.reason,
            incident_id=incident,
        )
    ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def _roll_back(intake: Intake, decision: Decision, incident: int, alert_id: int) -> AlertReceipt:
    from conveyor.service.environments import rollback

    alert, name, store = intake.alert, intake.name, intake.store
    evidence = {"alert": _evidence(alert), "incident": incident, "why": decision.reason}
    try:
        done = rollback(
            intake.project,
            store,
            name,
            actor=ACTOR,
            to=decision.warm,
            reason=f"alert {_title(alert)}",
            evidence=evidence,
        )
    except (ConveyorError, OSError) as error:
        said = error.message if isinstance(error, ConveyorError) else str(error)
        reason = f"the automatic rollback failed: {said}"
        with write_transaction(store.engine) as conn:
            conn.execute(
                sa.update(alerts)
                .where(alerts.c.id == alert_id)
                .values(outcome=AlertOutcome.INCIDENT.value, reason=reason)
            )
            incidents.add_alert(conn, incident, ACTOR, reason, _evidence(alert))
        return AlertReceipt(AlertOutcome.INCIDENT, reason, alert.fingerprint, name, incident)
    moved = {
        "from": done.from_release,
        "to": done.to_release,
        "switch_seconds": done.switch_seconds,
    }
    note = f"rolled back {done.from_release} -> {done.to_release} ({decision.reason})"
    incidents.mitigated(store, incident, ACTOR, note, {"rollback": moved})
    return AlertReceipt(
        AlertOutcome.ROLLED_BACK, decision.reason, alert.fingerprint, name, incident, moved
    )


# --- recording -------------------------------------------------------------------------------


def _title(alert: Alert) -> str:
    return alert.labels.get("alertname") or alert.labels.get("slo") or "alert"


def _evidence(alert: Alert) -> dict[str, Any]:
    """The alert as recorded with a rollback or on an incident's timeline."""
    return {
        "source": alert.source.value,
        "fingerprint": alert.fingerprint,
        "status": alert.status.value,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "starts_at": alert.starts_at,
    }


def _record(store: Store, alert: Alert, receipt: AlertReceipt, now: float) -> None:
    data: dict[str, Any] = {
        "outcome": receipt.outcome.value,
        "reason": receipt.reason,
        "fingerprint": receipt.fingerprint,
        "environment": receipt.environment,
        "incident": receipt.incident,
        "rollback": receipt.rollback,
    }
    if receipt.outcome is not AlertOutcome.REFUSED or malformed(alert) is None:
        data["alert"] = _evidence(alert)  # a malformed alert's labels are not kept
    else:
        data["source"] = getattr(alert.source, "value", None)
    row = event_log.event_row(
        EventKind.ALERT_RECEIVED, now, state=receipt.outcome.value, actor=ACTOR, data=data
    )
    with write_transaction(store.engine) as conn:
        event_log.append(conn, [row])


def refuse(store: Store, alert: Alert, reason: str) -> AlertReceipt:
    """An alert refused before the intake (its sender may not raise it): recorded."""
    receipt = _refused(alert, reason)
    _record(store, alert, receipt, time.time())
    return receipt


def refuse_delivery(store: Store, source: AlertSource, reason: str) -> None:
    """A delivery refused whole (malformed, too large): recorded, nothing of it kept."""
    data = {"outcome": AlertOutcome.REFUSED.value, "reason": reason, "source": source.value}
    row = event_log.event_row(
        EventKind.ALERT_RECEIVED,
        time.time(),
        state=AlertOutcome.REFUSED.value,
        actor=ACTOR,
        data=data,
    )
    with write_transaction(store.engine) as conn:
        event_log.append(conn, [row])
