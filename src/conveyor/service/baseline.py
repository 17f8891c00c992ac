"""`conveyor baseline accept|show`: the findings a project accepts as existing on its first
day, in `.conveyor/baseline.yml` (committed, reviewed like the exceptions file), each
acceptance also recorded in the audit log with its owner and reason."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.findings.accepted import (
    BASELINE_FILE,
    Acceptance,
    AcceptedBaseline,
    AcceptedFinding,
    load_accepted,
)
from conveyor.findings.model import Category, Disposition, Finding
from conveyor.service.project import Project
from conveyor.service.queries import run_view
from conveyor.service.reports import run_report
from conveyor.store.records import EventKind
from conveyor.store.store import Store

# Waived findings stay under their waiver: accepting them would outlive its expiry date.
ACCEPTABLE = (Disposition.NEW, Disposition.UNCHANGED)
MIN_REASON = 3


@dataclass(frozen=True)
class AcceptOutcome:
    file: Path
    run_id: int
    added: list[Finding]
    already: int  # findings of the run the file held before
    waived: int  # findings of the run an exception covers, left to it
    secrets: int  # accepted secrets, which `gates.secrets.fail_on_any` still blocks


def accept(
    project: Project,
    store: Store,
    *,
    run_id: int | None,
    reason: str,
    actor: str,
    today: date | None = None,
) -> AcceptOutcome:
    """Adds the run's findings (the latest run's by default) to the accepted baseline."""
    if len(reason.strip()) < MIN_REASON:
        raise ConveyorError(
            "--reason must say why these findings are accepted",
            hint='e.g. --reason "adopting the gates; cleanup tracked in SHOP-40"',
        )
    run = run_view(store, run_id).run
    report = run_report(store, run.id)
    if not report.sarif.get("runs"):
        raise NotFoundError(
            f"run {run.id} published no findings",
            hint="run the gate steps (lint, sast, secrets) first, or name a run that did",
        )
    current = load_accepted(project.directory)
    known = current.fingerprints
    fresh = _unique(f for f in report.findings if f.disposition in ACCEPTABLE)
    added = [f for f in fresh if f.fingerprint not in known]
    outcome = AcceptOutcome(
        file=project.directory / BASELINE_FILE,
        run_id=run.id,
        added=added,
        already=sum(f.fingerprint in known for f in fresh),
        waived=sum(f.disposition not in ACCEPTABLE for f in report.findings),
        secrets=sum(f.category is Category.SECRET for f in added),
    )
    if not added:
        return outcome
    acceptance = Acceptance(
        accepted=today or date.today(),
        owner=actor,
        reason=reason.strip(),
        run=run.id,
        commit=(run.commit_sha or "")[:12] or None,
        findings=[_accepted(f) for f in added],
    )
    _write_atomically(outcome.file, current.with_acceptance(acceptance).to_yaml())
    store.record_decision(
        EventKind.BASELINE_ACCEPTED,
        actor=actor,
        run_id=run.id,
        commit_sha=run.commit_sha,
        data={
            "file": BASELINE_FILE,
            "reason": acceptance.reason,
            "owner": actor,
            "findings": len(added),
            "fingerprints": [f.fingerprint for f in added],
        },
    )
    return outcome


def show(project: Project) -> AcceptedBaseline:
    return load_accepted(project.directory)


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    seen: dict[str, Finding] = {}
    for finding in findings:
        if finding.fingerprint:
            seen.setdefault(finding.fingerprint, finding)
    return list(seen.values())


def _accepted(finding: Finding) -> AcceptedFinding:
    return AcceptedFinding(
        fingerprint=finding.fingerprint, tool=finding.tool, rule=finding.rule_id, path=finding.path
    )


def _write_atomically(path: Path, text: str) -> None:
    """All or nothing: a crash leaves the old file, never half of the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".baseline-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
