"""DORA metrics from the event log, exactly: what Conveyor recorded, not what a forge's
events suggest (docs/insights.md#dora-metrics has every definition).

A *deployment* is a deploy whose release reached all of the environment's traffic (a
`traffic.shifted` event giving it weight 100), counted at that moment. A deployment
*failed* when traffic was rolled back away from its release (`rollback` with `from` =
it, at any time), or when a kill switch (`flag.killed`) or an incident (`incident.opened`)
came while it was the latest deployment and within `failure_window` of its full traffic.
It is *restored* at the first of: that rollback, the kill switch, the incident's
`incident.state` mitigated or resolved, or the next deployment reaching full traffic (a
fix deployed). A *rework* deployment is the first deployment within `rework_window` after
a failure. A regression *stopped by the canary* is a deploy whose judge said `rollback`
(`release.decision`) before its release reached full traffic.

`fold` and `report_of` are pure (rows in, report out); `dora` reads the rows with one
indexed query (observe/dora_events.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.observe.dora_events import INCIDENT_PREFIX, Row, commit_times, image_runs, read_rows
from conveyor.observe.dora_figures import DAY, WEEK, Bands, Spread, WeekTrend, bands, spread, weeks
from conveyor.service.project import Project
from conveyor.spec.durations import parse_duration
from conveyor.store.records import EventKind
from conveyor.store.store import Store

FAILURE_WINDOW = DAY  # a kill switch or an incident this soon after full traffic: a failure
REWORK_WINDOW = DAY  # a deployment this soon after a failure: rework (unplanned, a fix)
LOOKBACK = WEEK  # events read before the period: deploys started and failures attributed
INCIDENT_OPENED = INCIDENT_PREFIX + "opened"
INCIDENT_STATE = INCIDENT_PREFIX + "state"  # its `state` column: acknowledged, mitigated...
RESTORED_STATES = ("mitigated", "resolved")


@dataclass(frozen=True)
class DeploymentFact:
    """One deployment as the report counts it."""

    deploy_id: int
    release: str
    full_traffic_at: float
    commit_at: float | None
    lead_time: float | None
    failed_by: str | None  # "rollback", "flag-kill" or "incident"
    failed_at: float | None
    restored_by: str | None  # "rollback", "flag-kill", "incident", "fix-deployed"
    restored_at: float | None
    rework: bool


@dataclass(frozen=True)
class CanaryStop:
    """A regression the canary's judge stopped before it reached full traffic."""

    deploy_id: int
    release: str
    first_traffic_at: float | None
    stopped_at: float
    time_to_detect: float | None


@dataclass(frozen=True)
class DoraReport:
    environment: str
    since: float
    until: float
    days: float
    deployments: int
    per_day: float
    per_week: float
    lead_time: Spread
    without_commit_time: int  # deployments whose commit time is unknown (hand deploys)
    failed_deployments: int
    change_failure_rate: float | None
    recovery_time: Spread
    unrestored: int  # failed deployments not restored by the end of the period
    rework_deployments: int
    rework_rate: float | None
    time_to_detect: Spread  # full traffic -> first failure signal
    canary_stops: int
    canary_time_to_detect: Spread  # first canary traffic -> the judge's rollback verdict
    bands: Bands
    weeks: list[WeekTrend]
    deployment_facts: list[DeploymentFact] = field(default_factory=list)
    stopped_by_canary: list[CanaryStop] = field(default_factory=list)


# --- the entry points -------------------------------------------------------------------


def dora(
    store: Store,
    environment: str,
    *,
    since: float,
    until: float,
    failure_window: float = FAILURE_WINDOW,
    rework_window: float = REWORK_WINDOW,
) -> DoraReport:
    """The environment's DORA figures for deployments reaching full traffic in
    [since, until]."""
    if until <= since:
        raise ConveyorError("the period is empty: `since` must come before `until`")
    lookback = max(LOOKBACK, failure_window, rework_window)
    rows = read_rows(store, environment, since - lookback, until)
    folded = fold(rows)
    runs = _source_runs(store, folded.deployments)
    commits = commit_times(store, runs.values())
    commit_at = {d: commits[r] for d, r in runs.items() if r in commits}
    return report_of(
        environment,
        folded,
        commit_at,
        since=since,
        until=until,
        failure_window=failure_window,
        rework_window=rework_window,
    )


DEFAULT_SINCE = "90d"
MAX_PERIOD = 3660 * DAY  # ten years: a week per line stays readable


def project_dora(
    project: Project,
    store: Store,
    environment: str | None = None,
    since: str = DEFAULT_SINCE,
    now: float | None = None,
) -> DoraReport:
    """The report `conveyor insights dora` and the API give: `environment` (default: the
    production one of conveyor.yml) over the last `since` (a duration such as 90d)."""
    from conveyor.service.environments import environment_spec, environments_of

    try:
        seconds = parse_duration(since)
    except ValueError as error:
        raise ConveyorError(f"--since: {error}", hint="for instance --since 90d") from None
    if not 0 < seconds <= MAX_PERIOD:  # also NaN and infinity, which parse as numbers
        raise ConveyorError(
            f"--since: {since!r} is not a period of at most {MAX_PERIOD / DAY:.0f} days",
            hint="for instance --since 90d",
        )
    declared = environments_of(project)
    name = environment or production_environment(declared)
    environment_spec(project, name, declared)  # an unknown one: NotFoundError
    until = time.time() if now is None else now
    return dora(store, name, since=until - seconds, until=until)


def production_environment(environments: Mapping[str, Any]) -> str:
    """The environment at the end of the promotion chain (`after:`) with a human or order
    gate; else one named `production`; else the only one. Else the caller must say."""
    followed = {spec.after for spec in environments.values() if spec.after}
    ends = [n for n, s in environments.items() if n not in followed and (s.after or s.approval)]
    if len(ends) == 1:
        return ends[0]
    if "production" in environments:
        return "production"
    if len(environments) == 1:
        return next(iter(environments))
    raise ConveyorError(
        "no single production environment: "
        + (f"{', '.join(ends)} all end a promotion chain" if ends else "none has after/approval"),
        hint="name it: --env ENV",
    )


# --- the fold: rows in, deploys and failure signals out ---------------------------------


@dataclass
class _Deploy:
    deploy_id: int
    release: str
    run_id: int | None
    digest: str | None
    first_traffic_at: float | None = None
    full_at: float | None = None
    stopped_at: float | None = None  # the judge's rollback verdict before full traffic


@dataclass(frozen=True)
class _Signal:
    ts: float
    kind: str  # "rollback", "flag-kill", "incident", "incident-restored"
    release: str | None = None  # a rollback's `from`
    incident: str | None = None
    deploy: _Deploy | None = None  # the deploy a rollback ended (when it names one)


@dataclass
class Folded:
    deployments: list[_Deploy]  # reached full traffic, in that order
    stops: list[_Deploy]  # stopped by the canary's judge
    signals: list[_Signal]


def fold(rows: Iterable[Row]) -> Folded:
    deploys: dict[int, _Deploy] = {}
    folded = Folded([], [], [])
    for row in rows:
        kind = row.kind
        if kind == EventKind.DEPLOY_STARTED:
            started = _started(row)
            if started is not None:
                deploys[started.deploy_id] = started
            continue
        deploy = deploys.get(row.deploy_id) if row.deploy_id else None
        if kind == EventKind.TRAFFIC_SHIFTED:
            if deploy is not None and _shifted(deploy, row):
                folded.deployments.append(deploy)
        elif kind == EventKind.RELEASE_DECISION:
            if deploy is not None and _stopped(deploy, row):
                folded.stops.append(deploy)
        elif kind == EventKind.ROLLBACK:
            release = row.origin or None
            folded.signals.append(_Signal(row.ts, "rollback", release, deploy=deploy))
        elif kind == EventKind.FLAG_KILLED:
            folded.signals.append(_Signal(row.ts, "flag-kill"))
        elif kind == INCIDENT_OPENED:
            folded.signals.append(_Signal(row.ts, "incident", incident=row.incident))
        elif kind == INCIDENT_STATE and row.state in RESTORED_STATES:
            folded.signals.append(_Signal(row.ts, "incident-restored", incident=row.incident))
    return folded


def _stopped(deploy: _Deploy, row: Row) -> bool:
    """The judge's first rollback verdict before full traffic: a regression stopped."""
    if row.verdict != "rollback" or deploy.full_at is not None:
        return False
    if deploy.stopped_at is not None:
        return False
    deploy.stopped_at = row.ts
    return True


def _started(row: Row) -> _Deploy | None:
    if not row.deploy_id or not row.release:
        return None  # not a deploy this code wrote: nothing to count it by
    run_id = row.run_id if row.run_id is not None else row.approval_run
    return _Deploy(row.deploy_id, row.release, run_id or None, row.digest or None)


def _shifted(deploy: _Deploy, row: Row) -> bool:
    """Note the deploy's first traffic and full traffic; True when it just reached full."""
    weights = row.weights
    weight = weights.get(deploy.release) if isinstance(weights, Mapping) else None
    if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
        return False
    if deploy.first_traffic_at is None:
        deploy.first_traffic_at = row.ts
    if weight >= 100 and deploy.full_at is None:
        deploy.full_at = row.ts
        return True
    return False


def _source_runs(store: Store, deployments: Sequence[_Deploy]) -> dict[int, int]:
    """Each deployment's source run: the run that deployed it (or whose approval it used),
    else the newest run that built its image."""
    runs = {d.deploy_id: d.run_id for d in deployments if d.run_id is not None}
    by_hand = [d for d in deployments if d.run_id is None and d.digest]
    built = image_runs(store, (d.digest for d in by_hand if d.digest))
    for deploy in by_hand:
        if deploy.digest in built:
            runs[deploy.deploy_id] = built[deploy.digest]
    return runs


# --- from the fold to the figures --------------------------------------------------------


@dataclass
class _Outcome:
    """What happened to one deployment after its full traffic."""

    deploy: _Deploy
    failed_by: str | None = None
    failed_at: float | None = None
    restores: list[tuple[float, str]] = field(default_factory=list)
    rework: bool = False

    def fail(self, ts: float, by: str) -> None:
        if self.failed_at is None or ts < self.failed_at:
            self.failed_at, self.failed_by = ts, by

    def restored(self) -> tuple[float, str] | None:
        after = [r for r in self.restores if self.failed_at is not None and r[0] >= self.failed_at]
        return min(after) if after else None


def report_of(
    environment: str,
    folded: Folded,
    commit_at: Mapping[int, float],
    *,
    since: float,
    until: float,
    failure_window: float = FAILURE_WINDOW,
    rework_window: float = REWORK_WINDOW,
) -> DoraReport:
    outcomes = _attribute(folded, failure_window, rework_window)
    facts = [_fact(o, commit_at) for o in outcomes]
    ours = [f for f in facts if since <= f.full_traffic_at <= until]
    stops = [_stop(d) for d in folded.stops if d.stopped_at and since <= d.stopped_at <= until]
    days = (until - since) / DAY
    failed = [f for f in ours if f.failed_at is not None]
    recoveries = [f.restored_at - f.full_traffic_at for f in failed if f.restored_at]
    lead_times = [f.lead_time for f in ours if f.lead_time is not None]
    count = len(ours)
    cfr = len(failed) / count if count else None
    lead = spread(lead_times)
    recovery = spread(recoveries)
    return DoraReport(
        environment=environment,
        since=since,
        until=until,
        days=round(days, 3),
        deployments=count,
        per_day=count / days,
        per_week=count / days * 7,
        lead_time=lead,
        without_commit_time=count - len(lead_times),
        failed_deployments=len(failed),
        change_failure_rate=cfr,
        recovery_time=recovery,
        unrestored=sum(1 for f in failed if f.restored_at is None),
        rework_deployments=sum(1 for f in ours if f.rework),
        rework_rate=sum(1 for f in ours if f.rework) / count if count else None,
        time_to_detect=spread([f.failed_at - f.full_traffic_at for f in failed if f.failed_at]),
        canary_stops=len(stops),
        canary_time_to_detect=spread([s.time_to_detect for s in stops if s.time_to_detect]),
        bands=bands(count / days, lead.median, cfr, recovery.median),
        weeks=weeks(ours, [s.stopped_at for s in stops], since, until),
        deployment_facts=ours,
        stopped_by_canary=stops,
    )


def _attribute(folded: Folded, failure_window: float, rework_window: float) -> list[_Outcome]:
    """Each failure signal to the deployment it belongs to; restorations; rework."""
    outcomes = [_Outcome(d) for d in folded.deployments]
    by_incident: dict[str, _Outcome] = {}
    for signal in folded.signals:
        if signal.kind == "rollback":
            target = _rolled_back(outcomes, signal)
            if target is not None:  # exact: traffic left this release
                target.fail(signal.ts, "rollback")
                target.restores.append((signal.ts, "rollback"))
            continue
        if signal.kind == "incident-restored":
            found = by_incident.get(signal.incident or "")
            if found is not None:
                found.restores.append((signal.ts, "incident"))
            continue
        target = _latest(outcomes, signal.ts)
        full_at = target.deploy.full_at if target is not None else None
        if target is None or full_at is None or signal.ts - full_at > failure_window:
            continue
        target.fail(signal.ts, signal.kind)
        if signal.kind == "flag-kill":
            target.restores.append((signal.ts, "flag-kill"))  # the switch restores at once
        elif signal.incident is not None:
            by_incident[signal.incident] = target
    for index, outcome in enumerate(outcomes):
        failed_at = outcome.failed_at
        if failed_at is None:
            continue
        later = next((o for o in outcomes[index + 1 :] if _full(o) >= failed_at), None)
        if later is not None:
            outcome.restores.append((_full(later), "fix-deployed"))
            if _full(later) - failed_at <= rework_window:
                later.rework = True
    return outcomes


def _rolled_back(outcomes: Sequence[_Outcome], signal: _Signal) -> _Outcome | None:
    """The deployment a rollback took traffic away from: the deploy it names (none if
    that one never had all traffic: the canary stopped it), else the latest deployment
    of its `from` release."""
    if signal.deploy is not None:
        return next((o for o in outcomes if o.deploy is signal.deploy), None)
    if signal.release is None:
        return None
    return _latest(outcomes, signal.ts, release=signal.release)


def _full(outcome: _Outcome) -> float:
    assert outcome.deploy.full_at is not None
    return outcome.deploy.full_at


def _latest(outcomes: Sequence[_Outcome], ts: float, release: str | None = None) -> _Outcome | None:
    """The latest deployment at `ts` (of `release`, when given)."""
    for outcome in reversed(outcomes):
        if _full(outcome) <= ts and (release is None or outcome.deploy.release == release):
            return outcome
    return None


def _fact(outcome: _Outcome, commit_at: Mapping[int, float]) -> DeploymentFact:
    deploy = outcome.deploy
    full_at = _full(outcome)
    commit = commit_at.get(deploy.deploy_id)
    if commit is not None and commit > full_at:
        commit = None  # a commit time after its own deployment: a skewed clock, not a figure
    restored = outcome.restored()
    return DeploymentFact(
        deploy_id=deploy.deploy_id,
        release=deploy.release,
        full_traffic_at=full_at,
        commit_at=commit,
        lead_time=full_at - commit if commit is not None else None,
        failed_by=outcome.failed_by,
        failed_at=outcome.failed_at,
        restored_by=restored[1] if restored else None,
        restored_at=restored[0] if restored else None,
        rework=outcome.rework,
    )


def _stop(deploy: _Deploy) -> CanaryStop:
    assert deploy.stopped_at is not None
    first = deploy.first_traffic_at
    return CanaryStop(
        deploy_id=deploy.deploy_id,
        release=deploy.release,
        first_traffic_at=first,
        stopped_at=deploy.stopped_at,
        time_to_detect=deploy.stopped_at - first if first is not None else None,
    )
