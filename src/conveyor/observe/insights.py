"""`conveyor insights summary`: what a period taught, from what the store recorded, and
each actionable item ready to be filed as a requirement (`conveyor insights file ID`).

The sections: DORA trends (observe/dora.py, when present), incidents and their suspect
releases (`incident.*` events), regressions the canary caught (`release.decision`
rollback verdicts), flaky tests (`tests` reports' reruns, and jobs that passed on a
retry), the slowest pipeline stages (job durations), vulnerabilities with a fixed version
(`vuln-scan` reports), and waivers that expire soon (.conveyor/exceptions.yml).

An item's id is stable: the same flaky test, vulnerability or waiver gets the same id in
every summary, so "filed" and "addressed" (a commit referenced the requirement's key) can
be shown against it. Requirements are linked back to commits before each summary.
"""

from __future__ import annotations

import hashlib
import importlib
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.findings.reports import ReportKind, TestsReport, VulnScanReport, load
from conveyor.observe.requirements import (
    FiledRequirement,
    Requirement,
    file_requirement,
    link_commits,
    list_requirements,
)
from conveyor.service.project import Project
from conveyor.states import JobState
from conveyor.store import schema
from conveyor.store.db import read_transaction
from conveyor.store.store import Store

DEFAULT_PERIOD = 30 * 86400.0
WAIVER_HORIZON_DAYS = 14  # waivers expiring within this many days are listed
SLOWEST_SHOWN = 5
MIN_SLOW_SECONDS = 60.0  # a stage faster than this is not worth a requirement
MAX_REPORTS = 2_000  # report documents read per section (newest first)


class ItemKind(StrEnum):
    INCIDENT = "incident"
    REGRESSION = "regression"
    FLAKY_TEST = "flaky-test"
    FLAKY_JOB = "flaky-job"
    SLOW_STAGE = "slow-stage"
    VULNERABILITY = "vulnerability"
    WAIVER = "waiver"


class ItemState(StrEnum):
    OPEN = "open"  # nothing filed yet
    FILED = "filed"
    ADDRESSED = "addressed"  # a commit references the filed requirement


@dataclass(frozen=True)
class InsightItem:
    id: str  # stable: "flaky-test-3f2a9c1b2d"
    kind: ItemKind
    title: str
    detail: str
    source: str  # the requirement's source when filed: "insight:<id>", "incident:<n>"
    evidence: dict[str, Any] = field(default_factory=dict)
    state: ItemState = ItemState.OPEN
    requirement: dict[str, Any] | None = None  # key, location, addressed_by


@dataclass(frozen=True)
class InsightsSummary:
    since: float
    until: float
    dora: dict[str, Any]
    incidents: list[dict[str, Any]]
    regressions: list[dict[str, Any]]
    flaky_tests: list[dict[str, Any]]
    slowest_stages: list[dict[str, Any]]
    vulnerabilities: list[dict[str, Any]]
    expiring_waivers: list[dict[str, Any]]
    items: list[InsightItem]
    requirements: list[Requirement]


def item_id(kind: ItemKind, natural_key: str) -> str:
    """`kind-<10 hex digits>` of what identifies the item (a test id, an advisory and
    package, a waiver): the same thing always gets the same id."""
    digest = hashlib.sha256(f"{kind.value}\x1f{natural_key}".encode()).hexdigest()[:10]
    return f"{kind.value}-{digest}"


def summary(
    project: Project,
    store: Store,
    *,
    period: float = DEFAULT_PERIOD,
    now: float | None = None,
    today: date | None = None,
) -> InsightsSummary:
    until = time.time() if now is None else now
    since = until - period
    link_commits(project, store)
    incidents = _incidents(store, since, until)
    regressions = _regressions(store, since, until)
    flaky = _flaky_tests(store, since, until) + _flaky_jobs(store, since, until)
    slowest = _slowest_stages(store, since, until)
    vulnerabilities = _fixable_vulnerabilities(store, since, until)
    waivers = _expiring_waivers(project, today or date.today())
    items = [
        *(_incident_item(i) for i in incidents),
        *(_regression_item(r) for r in regressions),
        *(_flaky_item(f) for f in flaky),
        *(_slow_item(s) for s in slowest if s["median_seconds"] >= MIN_SLOW_SECONDS),
        *(_vulnerability_item(v) for v in vulnerabilities),
        *(_waiver_item(w) for w in waivers),
    ]
    requirements = list_requirements(store)
    return InsightsSummary(
        since=since,
        until=until,
        dora=dora_trends(project, store, since, until),
        incidents=incidents,
        regressions=regressions,
        flaky_tests=flaky,
        slowest_stages=slowest,
        vulnerabilities=vulnerabilities,
        expiring_waivers=waivers,
        items=_with_requirements(items, requirements),
        requirements=requirements,
    )


def file_item(
    project: Project,
    store: Store,
    item_id_: str,
    *,
    actor: str,
    period: float = DEFAULT_PERIOD,
) -> tuple[InsightItem, FiledRequirement]:
    """File the item `item_id_` of the current summary as a requirement (or give back the
    one filed already)."""
    found = {item.id: item for item in summary(project, store, period=period).items}
    item = found.get(item_id_)
    if item is None:
        raise NotFoundError(
            f"no insight {item_id_[:80]!r} in this period",
            hint="`conveyor insights summary` lists the items and their ids",
        )
    body = "\n".join(
        [
            item.detail,
            "",
            f"Filed by Conveyor from insight `{item.id}` ({item.kind.value}).",
        ]
    )
    filed = file_requirement(
        project,
        store,
        title=item.title,
        body=body,
        labels=("conveyor", item.kind.value),
        source=item.source,
        actor=actor,
    )
    return item, filed


# --- DORA (observe/dora.py, another part) -------------------------------------------------


def dora_trends(project: Project, store: Store, since: float, until: float) -> dict[str, Any]:
    """DORA's figures for the production environment from observe/dora.py, when that
    module is there (`dora(store, environment, since=, until=)` and
    `production_environment(environments)`); else says it is not connected."""
    try:
        dora = importlib.import_module("conveyor.observe.dora")
    except ImportError:
        return {"available": False, "reason": "DORA metrics (observe/dora.py) are not installed"}
    compute, choose = getattr(dora, "dora", None), getattr(dora, "production_environment", None)
    if compute is None or choose is None:
        return {"available": False, "reason": "observe/dora.py has no dora() to call"}
    from conveyor.service.environments import environments_of
    from conveyor.service.jsonable import to_jsonable

    try:
        environment = choose(environments_of(project))
        report = compute(store, environment, since=since, until=until)
    except ConveyorError as error:
        return {"available": False, "reason": str(error)}
    jsonable: dict[str, Any] = to_jsonable(report)
    for bulky in ("deployment_facts", "stopped_by_canary"):
        jsonable.pop(bulky, None)
    return {"available": True, **jsonable}


# --- sections --------------------------------------------------------------------------


def _events(store: Store, kinds: Iterable[str], since: float, until: float) -> list[Any]:
    table = schema.events
    query = (
        sa.select(table.c.id, table.c.ts, table.c.kind, table.c.state, table.c.data)
        .where(table.c.kind.in_(list(kinds)), table.c.ts >= since, table.c.ts <= until)
        .order_by(table.c.id)
    )
    with read_transaction(store.engine) as conn:
        return list(conn.execute(query))


def _incidents(store: Store, since: float, until: float) -> list[dict[str, Any]]:
    """Each incident opened in the period, its suspect releases (its likely causes) and
    the last state it reached."""
    found: dict[int, dict[str, Any]] = {}
    rows = _events(store, ("incident.opened", "incident.state"), since, until)
    for row in rows:
        data = row.data if isinstance(row.data, Mapping) else {}
        number = data.get("incident")
        if not isinstance(number, int):
            continue
        if row.kind == "incident.opened":
            sent = data.get("alert")
            alert: Mapping[str, Any] = sent if isinstance(sent, Mapping) else {}
            found[number] = {
                "incident": number,
                "environment": str(data.get("environment", "")),
                "opened_at": row.ts,
                "alert": str(alert.get("name") or alert.get("alertname") or "alert"),
                "suspects": _strings(data.get("suspects"))[:10],
                "time_to_detect": data.get("time_to_detect"),
                "state": "opened",
            }
        elif number in found:
            found[number]["state"] = row.state or found[number]["state"]
    return list(found.values())


def _strings(value: object) -> list[str]:
    return [str(item)[:200] for item in value] if isinstance(value, list) else []


def _regressions(store: Store, since: float, until: float) -> list[dict[str, Any]]:
    """Deploys the judge rolled back: regressions caught before they reached everyone."""
    caught: dict[tuple[str, Any], dict[str, Any]] = {}
    for row in _events(store, ("release.decision",), since, until):
        data = row.data if isinstance(row.data, Mapping) else {}
        if data.get("verdict") != "rollback":
            continue
        key = (str(data.get("environment", "")), data.get("deploy_id"))
        caught.setdefault(
            key,
            {
                "environment": key[0],
                "deploy_id": key[1],
                "reason": str(data.get("reason", ""))[:300],
                "at": row.ts,
            },
        )
    return list(caught.values())


def _runs_between(since: float, until: float) -> Any:
    runs = schema.runs
    return sa.select(runs.c.id).where(runs.c.started_at >= since, runs.c.started_at <= until)


def _flaky_tests(store: Store, since: float, until: float) -> list[dict[str, Any]]:
    """Tests that failed and then passed on a rerun, by test, with the runs it happened in."""
    reports = schema.reports
    query = (
        sa.select(reports.c.run_id, reports.c.job_id, reports.c.digest)
        .where(reports.c.kind == ReportKind.TESTS.value)
        .where(reports.c.run_id.in_(_runs_between(since, until)))
        .order_by(reports.c.id.desc())
        .limit(MAX_REPORTS)
    )
    with read_transaction(store.engine) as conn:
        rows = list(conn.execute(query))
    runs_by_test: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        try:
            document = load(TestsReport, store.blobs.get_bytes(row.digest), row.job_id)
        except (OSError, ValueError):
            continue  # a blob pruned or unreadable: the other reports still count
        for case in document.flaky:
            runs_by_test[case.id].add(int(row.run_id))
    return [
        {"test": test, "runs": sorted(runs), "times": len(runs)}
        for test, runs in sorted(runs_by_test.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]


def _flaky_jobs(store: Store, since: float, until: float) -> list[dict[str, Any]]:
    """Jobs that succeeded only after a retry."""
    jobs = schema.jobs
    query = (
        sa.select(jobs.c.run_id, jobs.c.name)
        .where(jobs.c.state == JobState.SUCCESS.value, jobs.c.attempts > 1)
        .where(jobs.c.run_id.in_(_runs_between(since, until)))
    )
    with read_transaction(store.engine) as conn:
        rows = list(conn.execute(query))
    runs_by_job: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        runs_by_job[str(row.name)].add(int(row.run_id))
    return [
        {"job": job, "runs": sorted(runs), "times": len(runs)}
        for job, runs in sorted(runs_by_job.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]


def _slowest_stages(store: Store, since: float, until: float) -> list[dict[str, Any]]:
    """Jobs by median duration over the period's runs, slowest first."""
    jobs = schema.jobs
    query = (
        sa.select(jobs.c.name, jobs.c.started_at, jobs.c.finished_at)
        .where(jobs.c.started_at.is_not(None), jobs.c.finished_at.is_not(None))
        .where(jobs.c.state.in_([JobState.SUCCESS.value, JobState.FAILED.value]))
        .where(jobs.c.run_id.in_(_runs_between(since, until)))
    )
    with read_transaction(store.engine) as conn:
        rows = list(conn.execute(query))
    durations: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        durations[str(row.name)].append(max(0.0, float(row.finished_at) - float(row.started_at)))
    medians = {name: statistics.median(values) for name, values in durations.items()}
    slowest = sorted(durations, key=lambda name: (-medians[name], name))[:SLOWEST_SHOWN]
    return [
        {
            "job": name,
            "median_seconds": round(medians[name], 3),
            "max_seconds": round(max(durations[name]), 3),
            "runs": len(durations[name]),
        }
        for name in slowest
    ]


def _fixable_vulnerabilities(store: Store, since: float, until: float) -> list[dict[str, Any]]:
    """Vulnerabilities the period's image scans found that have a fixed version, once each
    (advisory, package, installed version), not waived."""
    reports = schema.reports
    query = (
        sa.select(reports.c.job_id, reports.c.digest)
        .where(reports.c.kind == ReportKind.VULN_SCAN.value)
        .where(reports.c.created_at >= since, reports.c.created_at <= until)
        .order_by(reports.c.id.desc())
        .limit(MAX_REPORTS)
    )
    with read_transaction(store.engine) as conn:
        rows = list(conn.execute(query))
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        try:
            document = load(VulnScanReport, store.blobs.get_bytes(row.digest), row.job_id)
        except (OSError, ValueError):
            continue
        for entry in document.vulnerabilities:
            if not entry.get("fixed_in") or entry.get("disposition") == "waived":
                continue
            key = (
                str(entry.get("id")),
                str(entry.get("package")),
                str(entry.get("installed_version")),
            )
            severity = entry.get("severity")
            found.setdefault(
                key,
                {
                    "id": key[0],
                    "package": key[1],
                    "installed_version": key[2],
                    "fixed_in": str(entry["fixed_in"]),
                    "severity": severity.get("level") if isinstance(severity, Mapping) else None,
                    "summary": str(entry.get("summary", ""))[:300],
                },
            )
    return list(found.values())


def _expiring_waivers(project: Project, today: date) -> list[dict[str, Any]]:
    """Waivers in .conveyor/exceptions.yml that expire within the horizon (or have)."""
    from conveyor.findings.exceptions import load_exceptions

    try:
        exceptions = load_exceptions(project.directory)
    except ConveyorError:
        return []  # an unreadable file is the gates' to report
    horizon = today + timedelta(days=WAIVER_HORIZON_DAYS)
    found = []
    for entry, where in exceptions.entries:
        if entry.expires > horizon:
            continue
        what = entry.fingerprint or entry.rule or entry.path or "?"
        found.append(
            {
                "waiver": what,
                "where": where,
                "expires": entry.expires.isoformat(),
                "expired": entry.expires < today,
                "owner": entry.owner,
                "reason": entry.reason,
            }
        )
    return found


# --- items ----------------------------------------------------------------------------


def _incident_item(incident: Mapping[str, Any]) -> InsightItem:
    suspects = ", ".join(incident["suspects"]) or "none found"
    return InsightItem(
        id=f"incident-{incident['incident']}",
        kind=ItemKind.INCIDENT,
        title=f"Follow up incident {incident['incident']} in {incident['environment']}: "
        f"{incident['alert']}",
        detail=f"Incident {incident['incident']} ({incident['state']}) in "
        f"{incident['environment']}, alert {incident['alert']}; suspect releases: {suspects}.",
        source=f"incident:{incident['incident']}",  # the incident's own follow-up
        evidence=dict(incident),
    )


def _regression_item(regression: Mapping[str, Any]) -> InsightItem:
    natural = f"{regression['environment']}:{regression['deploy_id']}"
    identifier = item_id(ItemKind.REGRESSION, natural)
    return InsightItem(
        id=identifier,
        kind=ItemKind.REGRESSION,
        title=f"Regression caught by the canary in {regression['environment']} "
        f"(deploy {regression['deploy_id']})",
        detail=f"The judge rolled deploy {regression['deploy_id']} back: {regression['reason']}",
        source=f"insight:{identifier}",
        evidence=dict(regression),
    )


def _flaky_item(flaky: Mapping[str, Any]) -> InsightItem:
    if "test" in flaky:
        kind, name = ItemKind.FLAKY_TEST, str(flaky["test"])
        title = f"Flaky test: {name}"
        detail = f"{name} failed, then passed on a rerun, in {flaky['times']} run(s)"
    else:
        kind, name = ItemKind.FLAKY_JOB, str(flaky["job"])
        title = f"Flaky job: {name}"
        detail = f"Job {name} passed only after a retry in {flaky['times']} run(s)"
    identifier = item_id(kind, name)
    runs = ", ".join(str(r) for r in flaky["runs"][:20])
    return InsightItem(
        id=identifier,
        kind=kind,
        title=title[:200],
        detail=f"{detail}: runs {runs}.",
        source=f"insight:{identifier}",
        evidence=dict(flaky),
    )


def _slow_item(stage: Mapping[str, Any]) -> InsightItem:
    identifier = item_id(ItemKind.SLOW_STAGE, str(stage["job"]))
    return InsightItem(
        id=identifier,
        kind=ItemKind.SLOW_STAGE,
        title=f"Speed up the slow stage {stage['job']}",
        detail=f"Job {stage['job']} takes {stage['median_seconds']:.0f} s (median of "
        f"{stage['runs']} runs; longest {stage['max_seconds']:.0f} s).",
        source=f"insight:{identifier}",
        evidence=dict(stage),
    )


def _vulnerability_item(vulnerability: Mapping[str, Any]) -> InsightItem:
    natural = ":".join(str(vulnerability[name]) for name in ("id", "package", "installed_version"))
    identifier = item_id(ItemKind.VULNERABILITY, natural)
    return InsightItem(
        id=identifier,
        kind=ItemKind.VULNERABILITY,
        title=f"Upgrade {vulnerability['package']} to {vulnerability['fixed_in']} "
        f"({vulnerability['id']})",
        detail=f"{vulnerability['package']} {vulnerability['installed_version']} is affected by "
        f"{vulnerability['id']} ({vulnerability.get('severity') or 'unknown severity'}): "
        f"{vulnerability['summary']}. Fixed in {vulnerability['fixed_in']}.",
        source=f"insight:{identifier}",
        evidence=dict(vulnerability),
    )


def _waiver_item(waiver: Mapping[str, Any]) -> InsightItem:
    identifier = item_id(ItemKind.WAIVER, f"{waiver['waiver']}:{waiver['expires']}")
    verb = "expired" if waiver["expired"] else "expires"
    return InsightItem(
        id=identifier,
        kind=ItemKind.WAIVER,
        title=f"Waiver {waiver['waiver']} {verb} on {waiver['expires']}",
        detail=f"The waiver at {waiver['where']} ({waiver['reason']}, owner {waiver['owner']}) "
        f"{verb} on {waiver['expires']}: fix the finding or renew the waiver with a reason.",
        source=f"insight:{identifier}",
        evidence=dict(waiver),
    )


def _with_requirements(
    items: list[InsightItem], requirements: list[Requirement]
) -> list[InsightItem]:
    by_source = {r.source: r for r in reversed(requirements)}  # the first filed wins
    shown = []
    for item in items:
        found = by_source.get(item.source)
        if found is None:
            shown.append(item)
            continue
        state = ItemState.ADDRESSED if found.addressed_by else ItemState.FILED
        requirement = {
            "key": found.key,
            "location": found.location,
            "addressed_by": found.addressed_by,
        }
        shown.append(
            InsightItem(
                item.id,
                item.kind,
                item.title,
                item.detail,
                item.source,
                item.evidence,
                state,
                requirement,
            )
        )
    return shown
