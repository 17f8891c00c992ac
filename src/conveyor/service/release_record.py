"""The release record: everything that let one deploy of a release reach an environment.

A record is one deploy's: a release id names a digest, which may be deployed again after a
rollback, and each deploy has its own record. It gathers what the store already holds,
read back rather than re-derived: the release the deploy replaced and the commits since
that one's, the evidence of the run behind the digest (the run that deployed it; for a
hand deploy, the run whose approval it was made under, else the run that built the image):
its gate decisions, tests, findings, image scan, the staging verification (E2E,
performance, DAST); the approval the deploy was made under and its events, the signed
attestations (provenance, SBOM, scan) and the deploy's own outcome, plus the audit log's
head at the time of export so that an auditor can check later that nothing behind the
record changed (`conveyor audit verify --head`). `conveyor release record` writes it as
JSON or Markdown.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from conveyor.deploy.progress import load_progress
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.findings.reports import (
    GateReport,
    PerfReport,
    ReportKind,
    TestsReport,
    VulnScanReport,
)
from conveyor.service.audit import sign_head
from conveyor.service.project import Project
from conveyor.states import DeployState
from conveyor.store.ledger import DeployRecord
from conveyor.store.records import RunRecord
from conveyor.store.store import Store
from conveyor.vcs.commit_messages import log_messages

if TYPE_CHECKING:
    from conveyor.service.reports import RunReport

RECORD_VERSION = 4  # 2: keyed by deploy; `approval`, `approval_required`, run `source`
# 3: `notes`, the release notes (commits grouped by type, with their linked ids)
# 4: `quality`, complexity, duplication and coverage beside the replaced release's


class RunSource(StrEnum):
    """Why a run's evidence belongs to a deploy's record."""

    DEPLOY = "deployed it"  # the pipeline run whose deploy job made this deploy
    APPROVAL = "asked for the approval it was deployed under"
    BUILD = "built its image"  # the newest run that published the image (a hand deploy)


@dataclass(frozen=True)
class Sourced:
    run: RunRecord
    source: RunSource


def release_record(
    project: Project,
    store: Store,
    environment: str,
    release_id: str | None = None,
    deploy_id: int | None = None,
) -> dict[str, Any]:
    """The record of one deploy: `deploy_id`, else the latest deploy of `release_id`, else
    the environment's latest successful deploy."""
    deploy = _find_deploy(store, environment, release_id, deploy_id)
    approval = _approval_used(store, deploy)
    sourced = _source_run(store, deploy, approval)
    run = sourced.run if sourced is not None else None
    replaced = _replaced_deploy(store, deploy)
    entries = store.audit_entries(last=1)
    signed_head = sign_head(project, store)  # an export signs the head it carries
    approvals_run = approval["run_id"] if approval is not None else deploy.run_id
    return {
        "record_version": RECORD_VERSION,
        "exported_at": _iso(time.time()),
        "release": _release_part(deploy),
        "run": _run_part(sourced),
        "previous_release": _previous_release(deploy),
        **_change_part(project, store, run, replaced),
        **(_evidence(store, run.id) if run is not None else {}),
        "approval_required": _approval_required(project, environment),
        "approval": _approval_part(deploy, approval),
        "approvals": (
            _approvals(store, approvals_run, environment) if approvals_run is not None else []
        ),
        "provenance": _provenance(project, deploy),
        "quality": _quality(store, run, replaced),
        "audit_head": entries[-1].hash if entries else None,
        "audit_signed_head": signed_head.to_json() if signed_head is not None else None,
    }


def _change_part(
    project: Project, store: Store, run: RunRecord | None, replaced: DeployRecord | None
) -> dict[str, Any]:
    change = _change(project, store, run, replaced)
    return {"commits": change.commits, "notes": {"since": change.since, **change.notes}}


def _quality(store: Store, run: RunRecord | None, replaced: DeployRecord | None) -> dict[str, Any]:
    """The quality trends of this release beside the replaced one's (service/quality.py)."""
    from conveyor.service.quality import release_quality

    earlier = _source_run(store, replaced, _approval_used(store, replaced)) if replaced else None
    previous = replaced.release_id if replaced is not None else None
    return release_quality(store, run, previous, earlier.run if earlier is not None else None)


def _find_deploy(
    store: Store, environment: str, release_id: str | None, deploy_id: int | None
) -> DeployRecord:
    deploys = store.ledger.deploys.of_environment(environment)
    hint = f"`conveyor env history {environment}` lists every deploy"
    if deploy_id is not None:
        chosen = [d for d in deploys if d.id == deploy_id]
        if release_id is not None:
            chosen = [d for d in chosen if d.release_id == release_id]
        if not chosen:
            raise NotFoundError(f"{environment} has no deploy {deploy_id}", hint=hint)
        return chosen[-1]
    if release_id is not None:
        matching = [d for d in deploys if d.release_id == release_id]
        if not matching:
            raise NotFoundError(f"{environment} has no release {release_id}", hint=hint)
        succeeded = [d for d in matching if d.state is DeployState.SUCCEEDED]
        return (succeeded or matching)[-1]
    succeeded = [d for d in deploys if d.state is DeployState.SUCCEEDED]
    if not succeeded:
        raise NotFoundError(f"{environment} has no successful release yet", hint=hint)
    return succeeded[-1]


def _previous_release(deploy: DeployRecord) -> str | None:
    """The release this deploy replaced (live and running when it began); never itself."""
    previous = deploy.previous_release
    return previous if previous != deploy.release_id else None


def _replaced_deploy(store: Store, deploy: DeployRecord) -> DeployRecord | None:
    """The deploy that made the replaced release live: the newest successful deploy of it
    before this one (a rollback to it made no deploy, so this is still the right one)."""
    previous = _previous_release(deploy)
    if previous is None:
        return None
    earlier = [
        d
        for d in store.ledger.deploys.of_environment(deploy.environment)
        if d.id < deploy.id and d.release_id == previous and d.state is DeployState.SUCCEEDED
    ]
    return earlier[-1] if earlier else None


def _approval_used(store: Store, deploy: DeployRecord) -> dict[str, Any] | None:
    """The approval the deploy was made under, as its `deploy.started` event recorded it;
    for a deploy recorded before deploys kept it, the approved request for its digest and
    environment that was closed when the deploy began."""
    started = store.ledger.deploys.started(deploy.id)
    if started is not None and "approval" in started.data:
        recorded = started.data["approval"]
        return dict(recorded) if isinstance(recorded, Mapping) else None
    from conveyor.approvals.model import ApprovalState
    from conveyor.service.approvals import approval_used, ledger_of

    statuses = ledger_of(store).statuses(
        deploy.started_at, environment=deploy.environment, digest=deploy.digest
    )
    approved = [
        status
        for status in statuses
        if status.state is ApprovalState.APPROVED and (status.closed_at or 0.0) <= deploy.started_at
    ]
    return approval_used(approved[-1]) if approved else None


def _approval_part(
    deploy: DeployRecord, approval: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    if approval is None:
        return None
    approved_at = approval.get("approved_at")
    return {
        **approval,
        "approved_at": _iso(approved_at) if isinstance(approved_at, int | float) else None,
        # Made under an approval another deploy used first (a redeploy after a rollback).
        "reused": approval.get("run_id") != deploy.run_id,
    }


def _approval_required(project: Project, environment: str) -> bool | None:
    """Whether conveyor.yml gates the environment now (None: it cannot be read)."""
    from conveyor.service.environments import environments_of

    try:
        spec = environments_of(project).get(environment)
    except ConveyorError:
        return None
    return spec.approval is not None if spec is not None else None


def source_run(store: Store, deploy: DeployRecord) -> RunRecord | None:
    """The run a deploy carries the evidence of (see `_source_run`), for other readers."""
    sourced = _source_run(store, deploy, _approval_used(store, deploy))
    return sourced.run if sourced is not None else None


def release_commits(project: Project, store: Store, deploy: DeployRecord) -> list[dict[str, str]]:
    """The commits a deploy brought (as in its record), for other readers (incidents)."""
    return _commits(project, store, source_run(store, deploy), _replaced_deploy(store, deploy))


def _source_run(
    store: Store, deploy: DeployRecord, approval: Mapping[str, Any] | None
) -> Sourced | None:
    """The run whose evidence (commits, gates, tests, scan) the deploy carries: the run that
    deployed it; for a hand deploy, the run whose approval it used, else the newest run
    that built its image."""
    candidates: list[tuple[int | None, RunSource]] = [(deploy.run_id, RunSource.DEPLOY)]
    if approval is not None and isinstance(approval.get("run_id"), int):
        candidates.append((int(approval["run_id"]), RunSource.APPROVAL))
    built = store.runs_that_built(deploy.digest)
    candidates.append((built[-1] if built else None, RunSource.BUILD))
    for run_id, source in candidates:
        if run_id is None:
            continue
        try:
            return Sourced(store.get_run(run_id), source)
        except NotFoundError:
            continue  # a run pruned from the store: the next witness
    return None


def _release_part(deploy: DeployRecord) -> dict[str, Any]:
    return {
        "id": deploy.release_id,
        "deploy_id": deploy.id,
        "environment": deploy.environment,
        "image": f"{deploy.repository}@{deploy.digest}",
        "state": deploy.state.value,
        "reason": deploy.reason,
        "deployed_by": deploy.actor,
        "deployed_from_run": deploy.run_id,  # None: by hand (`conveyor deploy`)
        "started_at": _iso(deploy.started_at),
        "finished_at": _iso(deploy.finished_at) if deploy.finished_at else None,
        "rollout": _rollout(deploy),
    }


def _rollout(deploy: DeployRecord) -> dict[str, Any]:
    """A progressive release's recorded progress (validated), else nothing."""
    progress = load_progress(deploy.progress)
    return progress.to_json() if progress is not None else {}


def _run_part(sourced: Sourced | None) -> dict[str, Any] | None:
    if sourced is None:
        return None
    run = sourced.run
    return {
        "id": run.id,
        "pipeline": run.pipeline,
        "state": run.state.value,
        "commit": run.commit_sha,
        "branch": run.branch,
        "author": run.author,
        "message": run.message,
        "triggered_by": run.actor,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at) if run.finished_at else None,
        "source": sourced.source.value,  # why this run's evidence is the release's
    }


@dataclass(frozen=True)
class Change:
    """What a deploy brings: the commits since the commit of the release it replaced (or
    its own commit alone), and their release notes."""

    since: str | None
    until: str | None
    commits: list[dict[str, str]]
    notes: dict[str, Any]


def deploy_change(project: Project, store: Store, deploy: DeployRecord) -> Change:
    """The change a deploy brought (see `Change`), read from the repository."""
    sourced = _source_run(store, deploy, _approval_used(store, deploy))
    run = sourced.run if sourced is not None else None
    return _change(project, store, run, _replaced_deploy(store, deploy))


def find_deploy(
    store: Store, environment: str, release_id: str | None = None, deploy_id: int | None = None
) -> DeployRecord:
    """`deploy_id`, else the latest deploy of `release_id`, else the environment's latest
    successful deploy; NotFoundError when there is none."""
    return _find_deploy(store, environment, release_id, deploy_id)


def _change(
    project: Project, store: Store, run: RunRecord | None, replaced: DeployRecord | None
) -> Change:
    from conveyor.observe.commit_links import commit_links, grouped_notes

    if run is None or run.commit_sha is None:
        return Change(None, None, [], grouped_notes([]))
    since = None
    if replaced is not None:
        earlier = _source_run(store, replaced, _approval_used(store, replaced))
        since = earlier.run.commit_sha if earlier is not None else None
    try:
        found = log_messages(project.directory, run.commit_sha, since, limit=None if since else 1)
    except ConveyorError:  # the repository moved or was rewritten: say so, keep the rest
        missing = [{"sha": run.commit_sha, "note": "not found in the repository any more"}]
        return Change(since, run.commit_sha, missing, grouped_notes([]))
    commits = [
        {
            "sha": commit.sha,
            "author": commit.author,
            "date": _iso(commit.committed_at),
            "subject": commit.message.partition("\n")[0],
        }
        for commit in found
    ]
    repository = _forge_repository(project)
    notes = grouped_notes([commit_links(commit, repository) for commit in found])
    return Change(since, run.commit_sha, commits, notes)


def _commits(
    project: Project, store: Store, run: RunRecord | None, replaced: DeployRecord | None
) -> list[dict[str, str]]:
    """The commits this release brings: since the commit of the release it replaced, or
    just its own."""
    return _change(project, store, run, replaced).commits


def _forge_repository(project: Project) -> str | None:
    """The repository's full name on the forge (`owner/repo#12` is then `#12`), if any."""
    from conveyor.spec.loader import load_pipeline
    from conveyor.steps.registry import STEP_PARAMS

    try:
        forge = load_pipeline(project.spec_path, steps=STEP_PARAMS).pipeline.forge
    except ConveyorError:
        return None
    return forge.repository if forge is not None else None


def _evidence(store: Store, run_id: int) -> dict[str, Any]:
    """What the run's jobs published, by subject: its report, read once."""
    from conveyor.service.reports import run_report, typed_documents

    report = run_report(store, run_id)
    scans = typed_documents(store, run_id, ReportKind.VULN_SCAN, VulnScanReport)
    return {
        "gates": [_gate(doc) for doc in report.gates],
        "tests": [_tests(doc) for doc in report.tests],
        "findings": _findings(report),
        "scan": [_scan(doc) for doc in scans],
        "staging": {
            "e2e": [_tests(doc) for doc in report.e2e],
            "perf": [_perf(doc) for doc in report.perf],
        },
    }


def _gate(doc: GateReport) -> dict[str, Any]:
    return {
        "job": doc.job,
        "gate": doc.gate,
        "passed": doc.passed,
        "reasons": list(doc.reasons),
        "counts": dict(doc.counts),
    }


def _tests(doc: TestsReport) -> dict[str, Any]:
    return {"job": doc.job, "totals": dict(doc.totals), "failed": [c.id for c in doc.failures]}


def _findings(report: RunReport) -> dict[str, Any]:
    by_disposition = {
        disposition.value: len(findings)
        for disposition, findings in report.by_disposition().items()
    }
    by_tool: dict[str, int] = {}
    for finding in report.findings:
        by_tool[finding.tool] = by_tool.get(finding.tool, 0) + 1
    return {"total": len(report.findings), "by_disposition": by_disposition, "by_tool": by_tool}


def _scan(doc: VulnScanReport) -> dict[str, Any]:
    return {
        "job": doc.job,
        "database": doc.database,
        "vulnerabilities": doc.vulnerabilities,
        "passed": doc.gate.passed if doc.gate else None,
        "reasons": doc.gate.reasons if doc.gate else [],
    }


def _perf(doc: PerfReport) -> dict[str, Any]:
    keep = {"totals", "thresholds", "comparison", "passed", "reasons", "settings"}
    return {"job": doc.job, **doc.model_dump(mode="json", include=keep)}


def _provenance(project: Project, deploy: DeployRecord) -> list[dict[str, Any]]:
    """The attestations attached to the image itself (what admission verified), read from
    the image store by digest: a cached `sign` job attaches nothing new, yet they are there."""
    from conveyor.service.images import image_store
    from conveyor.supply.referrers import attestations

    found = []
    for stored in attestations(image_store(project), deploy.repository, deploy.digest):
        envelope = json.loads(stored.envelope)
        payload = json.loads(base64.b64decode(envelope["payload"]))
        found.append(
            {
                "artifact_type": stored.artifact_type,
                "referrer": stored.manifest_digest,
                "predicate_type": payload.get("predicateType"),
                "signed_by": [sig.get("keyid") for sig in envelope.get("signatures", [])],
            }
        )
    return found


def _approvals(store: Store, run_id: int, environment: str) -> list[dict[str, Any]]:
    """Every approval event of the run for this environment: requests, decisions, refusals."""
    return [
        {"ts": _iso(event.ts), "kind": event.kind, "actor": event.actor, **dict(event.data)}
        for event in store.events(run_id=run_id)
        if event.kind.startswith("approval.") and event.data.get("environment") == environment
    ]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


# --- Markdown --------------------------------------------------------------------------


def to_markdown(record: Mapping[str, Any]) -> str:
    """The record for people: a heading per subject, the same facts as the JSON."""
    release, run = record["release"], record.get("run")
    by_hand = release.get("deployed_from_run") is None
    lines = [
        f"# Release {release['id']} to {release['environment']}",
        "",
        f"- **Deploy:** {release.get('deploy_id')}"
        + (" (by hand)" if by_hand else f" (run {release.get('deployed_from_run')})"),
        f"- **Image:** `{release['image']}`",
        f"- **State:** {release['state']}"
        + (f" ({release['reason']})" if release.get("reason") else ""),
        f"- **Deployed by:** {release['deployed_by']}, {release['started_at']}"
        f" to {release['finished_at'] or 'unfinished'}",
        f"- **Previous release:** {record.get('previous_release') or 'none'}",
        f"- **Audit head at export:** `{record.get('audit_head') or 'empty'}`"
        + _signed_md(record.get("audit_signed_head")),
    ]
    if run is not None:
        lines += [
            f"- **Run:** {run['id']} ({run['state']}) on {run['branch']} at"
            f" `{(run['commit'] or '')[:12]}`, triggered by {run['triggered_by']}"
            + (f"; it {run['source']}" if run.get("source") else ""),
        ]
    lines += _commits_md(record.get("commits", []))
    lines += _notes_md(record.get("notes"))
    lines += _gates_md(record.get("gates", []))
    lines += _tests_md("Tests", record.get("tests", []))
    lines += _findings_md(record.get("findings"))
    lines += _scan_md(record.get("scan", []))
    staging = record.get("staging", {})
    lines += _tests_md("Staging: end-to-end journeys", staging.get("e2e", []))
    lines += _perf_md(staging.get("perf", []))
    lines += _approvals_md(record)
    lines += _provenance_md(record.get("provenance", []))
    lines += _quality_md(record.get("quality"))
    return "\n".join(lines) + "\n"


def _commits_md(commits: list[Mapping[str, Any]]) -> list[str]:
    lines = ["", "## Commits", ""]
    for commit in commits:
        subject = commit.get("subject", commit.get("note", ""))
        lines.append(f"- `{commit['sha'][:12]}` {subject} ({commit.get('author', '?')})")
    return lines if commits else [*lines, "- none recorded"]


def _notes_md(notes: Mapping[str, Any] | None) -> list[str]:
    if not notes:
        return []
    from conveyor.observe.commit_links import notes_markdown

    return ["", "## Release notes", *notes_markdown(notes)]


def _gates_md(gates: list[Mapping[str, Any]]) -> list[str]:
    lines = ["", "## Gates", "", "| job | gate | passed | reasons |", "|---|---|---|---|"]
    for gate in gates:
        reasons = "; ".join(gate.get("reasons", [])) or "-"
        mark = "yes" if gate.get("passed") else "**no**"
        lines.append(f"| {gate['job']} | {gate.get('gate')} | {mark} | {reasons} |")
    return lines


def _tests_md(title: str, reports: list[Mapping[str, Any]]) -> list[str]:
    lines = ["", f"## {title}", ""]
    for report in reports:
        totals = ", ".join(f"{k} {v}" for k, v in report.get("totals", {}).items())
        lines.append(f"- {report['job']}: {totals or 'no totals'}")
        lines += [f"  - failed: {name}" for name in report.get("failed", [])]
    return lines if reports else [*lines, "- none recorded"]


def _findings_md(findings: Mapping[str, Any] | None) -> list[str]:
    if not findings:
        return []
    dispositions = ", ".join(f"{k} {v}" for k, v in findings["by_disposition"].items())
    tools = ", ".join(f"{k} {v}" for k, v in findings["by_tool"].items()) or "none"
    return [
        "",
        "## Findings",
        "",
        f"- {findings['total']} in all: {dispositions}",
        f"- by tool: {tools}",
    ]


def _scan_md(scans: list[Mapping[str, Any]]) -> list[str]:
    lines = ["", "## Image scan", ""]
    for scan in scans:
        database = scan.get("database", {})
        lines.append(
            f"- {scan['job']}: passed {scan.get('passed')}, "
            f"{len(scan.get('vulnerabilities', []))} vulnerabilities, against "
            f"{database.get('advisories', '?')} advisories (database "
            f"`{str(database.get('digest', ''))[:19]}`, newest advisory "
            f"{database.get('newest_advisory') or 'unknown'}, imported "
            f"{database.get('imported_at')})"
        )
        lines += [f"  - {reason}" for reason in scan.get("reasons", [])]
    return lines if scans else [*lines, "- none recorded"]


def _perf_md(reports: list[Mapping[str, Any]]) -> list[str]:
    lines = ["", "## Staging: performance", ""]
    for report in reports:
        totals = report.get("totals", {})
        shown = ", ".join(f"{k} {_number(v)}" for k, v in totals.items())
        lines.append(f"- {report['job']}: passed {report.get('passed')}; {shown}")
        lines += [f"  - {reason}" for reason in report.get("reasons", [])]
    return lines if reports else [*lines, "- none recorded"]


def _approvals_md(record: Mapping[str, Any]) -> list[str]:
    lines = ["", "## Approvals", ""]
    events: list[Mapping[str, Any]] = record.get("approvals", [])
    used = record.get("approval")
    if used:
        names = ", ".join(used.get("approved_by", [])) or "?"
        reused = (
            " (reused: approved for an earlier deploy of this digest)" if used["reused"] else ""
        )
        lines.append(
            f"- deployed under the approval of run {used.get('run_id')}'s request, by "
            f"{names} at {used.get('approved_at')}{reused}"
        )
    for event in events:
        who = event.get("identity") or event.get("actor") or "?"
        refused = event["kind"] == "approval.refused"
        said = (event.get("reason") if refused else event.get("comment")) or ""
        lines.append(f"- {event['ts']} {event['kind']} by {who}" + (f": {said}" if said else ""))
    if used or events:
        return lines
    if record.get("approval_required"):
        environment = record["release"]["environment"]
        return [*lines, f"- **none recorded**, although {environment} requires an approval"]
    return [*lines, "- none: no approval was required"]


def _number(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _provenance_md(attestations: list[Mapping[str, Any]]) -> list[str]:
    lines = ["", "## Provenance and attestations", ""]
    for item in attestations:
        described = ", ".join(f"{k} `{v}`" for k, v in item.items())
        lines.append(f"- {described}")
    return lines if attestations else [*lines, "- none recorded"]


def _signed_md(signed: Mapping[str, Any] | None) -> str:
    if not signed:
        return " (not signed)"
    return f" (signed over {signed['entries']} entries by key `{str(signed['key_id'])[:16]}`)"


def _quality_md(quality: Mapping[str, Any] | None) -> list[str]:
    from conveyor.service.quality import quality_markdown

    return quality_markdown(quality)
