"""The release record: everything that let one release reach an environment, in one file.

For a deploy that went through a pipeline run, the record gathers what the store already
holds, read back rather than re-derived: the commits since the environment's previous
release, the run's gate decisions, tests, findings, image scan, the staging verification
(E2E, performance, DAST), the approvals, the signed attestations (provenance, SBOM, scan)
and the deploy's own outcome, plus the audit log's head at the time of export so that an
auditor can check later that nothing behind the record changed (`conveyor audit verify
--head`). `conveyor release record` writes it as JSON or Markdown.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
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
from conveyor.vcs.commits import log_commits

if TYPE_CHECKING:
    from conveyor.service.reports import RunReport

RECORD_VERSION = 1


def release_record(
    project: Project, store: Store, environment: str, release_id: str | None = None
) -> dict[str, Any]:
    """The record of `release_id` (default: the environment's latest successful deploy)."""
    deploy = _find_deploy(store, environment, release_id)
    run = store.get_run(deploy.run_id) if deploy.run_id is not None else None
    previous = _previous_success(store, environment, deploy)
    entries = store.audit_entries(last=1)
    signed_head = sign_head(project, store)  # an export signs the head it carries
    return {
        "record_version": RECORD_VERSION,
        "exported_at": _iso(time.time()),
        "release": _release_part(deploy),
        "run": _run_part(run),
        "previous_release": previous.release_id if previous else None,
        "commits": _commits(project, store, run, previous),
        **(_evidence(store, run.id) if run is not None else {}),
        "approvals": _approvals(store, run.id, environment) if run is not None else [],
        "provenance": _provenance(project, deploy),
        "audit_head": entries[-1].hash if entries else None,
        "audit_signed_head": signed_head.to_json() if signed_head is not None else None,
    }


def _find_deploy(store: Store, environment: str, release_id: str | None) -> DeployRecord:
    deploys = store.ledger.deploys.of_environment(environment)
    if release_id is not None:
        matching = [d for d in deploys if d.release_id == release_id]
        if not matching:
            raise NotFoundError(
                f"{environment} has no release {release_id}",
                hint=f"`conveyor env history {environment}` lists them",
            )
        return matching[-1]
    succeeded = [d for d in deploys if d.state is DeployState.SUCCEEDED]
    if not succeeded:
        raise NotFoundError(
            f"{environment} has no successful release yet",
            hint=f"`conveyor env history {environment}` lists every deploy",
        )
    return succeeded[-1]


def _previous_success(store: Store, environment: str, deploy: DeployRecord) -> DeployRecord | None:
    earlier = [
        d
        for d in store.ledger.deploys.of_environment(environment)
        if d.id < deploy.id and d.state is DeployState.SUCCEEDED
    ]
    return earlier[-1] if earlier else None


def _release_part(deploy: DeployRecord) -> dict[str, Any]:
    return {
        "id": deploy.release_id,
        "environment": deploy.environment,
        "image": f"{deploy.repository}@{deploy.digest}",
        "state": deploy.state.value,
        "reason": deploy.reason,
        "deployed_by": deploy.actor,
        "started_at": _iso(deploy.started_at),
        "finished_at": _iso(deploy.finished_at) if deploy.finished_at else None,
        "rollout": _rollout(deploy),
    }


def _rollout(deploy: DeployRecord) -> dict[str, Any]:
    """A progressive release's recorded progress (validated), else nothing."""
    progress = load_progress(deploy.progress)
    return progress.to_json() if progress is not None else {}


def _run_part(run: RunRecord | None) -> dict[str, Any] | None:
    if run is None:
        return None
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
    }


def _commits(
    project: Project, store: Store, run: RunRecord | None, previous: DeployRecord | None
) -> list[dict[str, str]]:
    """The commits this release brings: since the previous release's commit, or just its own."""
    if run is None or run.commit_sha is None:
        return []
    since = None
    if previous is not None and previous.run_id is not None:
        since = store.get_run(previous.run_id).commit_sha
    try:
        found = log_commits(project.directory, run.commit_sha, since, limit=None if since else 1)
    except ConveyorError:  # the repository moved or was rewritten: say so, keep the rest
        return [{"sha": run.commit_sha, "note": "not found in the repository any more"}]
    return [
        {
            "sha": commit.sha,
            "author": commit.author,
            "date": _iso(commit.committed_at),
            "subject": commit.subject,
        }
        for commit in found
    ]


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
    lines = [
        f"# Release {release['id']} to {release['environment']}",
        "",
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
            f" `{(run['commit'] or '')[:12]}`, triggered by {run['triggered_by']}",
        ]
    lines += _commits_md(record.get("commits", []))
    lines += _gates_md(record.get("gates", []))
    lines += _tests_md("Tests", record.get("tests", []))
    lines += _findings_md(record.get("findings"))
    lines += _scan_md(record.get("scan", []))
    staging = record.get("staging", {})
    lines += _tests_md("Staging: end-to-end journeys", staging.get("e2e", []))
    lines += _perf_md(staging.get("perf", []))
    lines += _approvals_md(record.get("approvals", []))
    lines += _provenance_md(record.get("provenance", []))
    return "\n".join(lines) + "\n"


def _commits_md(commits: list[Mapping[str, Any]]) -> list[str]:
    lines = ["", "## Commits", ""]
    for commit in commits:
        subject = commit.get("subject", commit.get("note", ""))
        lines.append(f"- `{commit['sha'][:12]}` {subject} ({commit.get('author', '?')})")
    return lines if commits else [*lines, "- none recorded"]


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


def _approvals_md(events: list[Mapping[str, Any]]) -> list[str]:
    lines = ["", "## Approvals", ""]
    for event in events:
        who = event.get("identity") or event.get("actor") or "?"
        refused = event["kind"] == "approval.refused"
        said = (event.get("reason") if refused else event.get("comment")) or ""
        lines.append(f"- {event['ts']} {event['kind']} by {who}" + (f": {said}" if said else ""))
    return lines if events else [*lines, "- none: no approval was required"]


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
