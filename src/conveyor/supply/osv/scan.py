"""Scanning packages against the vulnerability database: findings, the gate, JSON and SARIF.

A vulnerability's identity is (advisory, package, installed version): its fingerprint has
no line number, so moving a pin inside requirements.txt keeps an exception valid, while
upgrading to another affected version asks for a fresh look.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from conveyor import __version__
from conveyor.findings.exceptions import Exceptions
from conveyor.findings.gate import GateDecision
from conveyor.findings.model import Category, Disposition, Finding, Level
from conveyor.findings.sarif import write_log
from conveyor.spec.images import VulnGate as VulnGatePolicy
from conveyor.supply.osv.db import DBStatus, VulnDB
from conveyor.supply.osv.match import Match, MatchIndex, Severity, SeverityLevel
from conveyor.supply.osv.versions import normalize_name

TOOL = "conveyor-osv"
GATE = "vulnerabilities"
ADVISORY_URL = "https://osv.dev/vulnerability/{id}"

_LEVELS = {
    SeverityLevel.CRITICAL: Level.ERROR,
    SeverityLevel.HIGH: Level.ERROR,
    SeverityLevel.MEDIUM: Level.WARNING,
    SeverityLevel.LOW: Level.NOTE,
    SeverityLevel.UNKNOWN: Level.WARNING,
}


@dataclass(frozen=True)
class Vulnerability:
    advisory_id: str
    aliases: tuple[str, ...]  # CVE and GHSA ids
    package: str  # PEP 503 name
    installed_version: str
    fixed_in: str | None  # the smallest fixed version above the installed one
    fixed_versions: tuple[str, ...]
    severity: Severity
    summary: str

    @classmethod
    def of(cls, match: Match) -> Vulnerability:
        advisory = match.advisory
        return cls(
            advisory_id=advisory.id,
            aliases=advisory.aliases,
            package=match.package,
            installed_version=match.installed,
            fixed_in=match.fixed_in,
            fixed_versions=match.fixed_versions,
            severity=advisory.severity,
            summary=advisory.summary,
        )


def scan_packages(
    db: VulnDB | MatchIndex, packages: Iterable[tuple[str, str]]
) -> list[Vulnerability]:
    """Every advisory affecting the (name, version) pairs, most severe first."""
    index = db.index() if isinstance(db, VulnDB) else db
    unique = dict.fromkeys((normalize_name(name), version.strip()) for name, version in packages)
    found = [Vulnerability.of(m) for name, version in unique for m in index.matches(name, version)]
    return sorted(found, key=lambda v: (-v.severity.level.rank, v.package, v.advisory_id))


def vulnerability_fingerprint(advisory_id: str, package: str, version: str) -> str:
    material = "\x1f".join([advisory_id, normalize_name(package), version])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def to_findings(vulnerabilities: Iterable[Vulnerability], *, source: str) -> list[Finding]:
    """Findings located at `source`: the SBOM or requirements file, or `image:<digest>`."""
    return [_finding(v, source) for v in vulnerabilities]


def _finding(vulnerability: Vulnerability, source: str) -> Finding:
    v = vulnerability
    aliases = f" ({', '.join(v.aliases)})" if v.aliases else ""
    fix = f"fixed in {v.fixed_in}" if v.fixed_in else "no fixed version above it"
    return Finding(
        tool=TOOL,
        rule_id=v.advisory_id,
        level=_LEVELS[v.severity.level],
        message=f"{v.package} {v.installed_version}: {v.advisory_id}{aliases}: {v.summary} "
        f"[{v.severity.level.value}; {fix}]",
        category=Category.VULNERABILITY,
        path=source,
        fingerprint=vulnerability_fingerprint(v.advisory_id, v.package, v.installed_version),
        help_uri=ADVISORY_URL.format(id=v.advisory_id),
        properties={
            "package": v.package,
            "installed_version": v.installed_version,
            "fixed_in": v.fixed_in,
            "fixed_versions": list(v.fixed_versions),
            "aliases": list(v.aliases),
            "summary": v.summary,
            "severity": v.severity.level.value,
            "cvss_score": v.severity.score,
            "cvss_vector": v.severity.vector,
        },
    )


class VulnGate(VulnGatePolicy):
    """The `images.vulnerabilities` policy, with the decision it makes."""

    def decide(
        self, findings: Iterable[Finding], exceptions: Exceptions, today: date
    ) -> tuple[list[Finding], GateDecision]:
        """Apply the exceptions, then decide; returns the findings with their dispositions."""
        applied = exceptions.apply(findings, today)
        blocking = [f for f in applied if self.blocks(f)]
        return applied, GateDecision(
            gate=GATE,
            passed=not blocking,
            reasons=[_reason(f) for f in sorted(blocking, key=_order)],
            counts=_counts(applied),
        )

    def blocks(self, finding: Finding) -> bool:
        if finding.disposition is Disposition.WAIVED:
            return False
        if finding.disposition is Disposition.EXPIRED_WAIVER:
            return True  # as for every gate: an expired exception stops waiving, loudly
        if self.fixable_only and not finding.properties.get("fixed_in"):
            return False
        level = severity_level(finding)
        if level is SeverityLevel.UNKNOWN:
            return self.unknown_blocks
        return level.rank >= SeverityLevel(self.fail_on_severity.value).rank


def severity_level(finding: Finding) -> SeverityLevel:
    try:
        return SeverityLevel(finding.properties.get("severity", "unknown"))
    except ValueError:
        return SeverityLevel.UNKNOWN


def _counts(findings: Sequence[Finding]) -> dict[str, int]:
    """Non-waived findings per severity, and how many were waived."""
    open_levels = Counter(
        severity_level(f).value for f in findings if f.disposition is not Disposition.WAIVED
    )
    counts = {level.value: open_levels.get(level.value, 0) for level in SeverityLevel}
    counts["waived"] = sum(f.disposition is Disposition.WAIVED for f in findings)
    return counts


def _reason(finding: Finding) -> str:
    props = finding.properties
    fix = f"fixed in {props['fixed_in']}" if props.get("fixed_in") else "no fix yet"
    tag = finding.disposition.value
    if finding.disposition is Disposition.EXPIRED_WAIVER and finding.waiver:
        tag = f"waiver expired {finding.waiver.expires} ({finding.waiver.source})"
    return (
        f"{props.get('package')} {props.get('installed_version')}: "
        f"{severity_level(finding).value} {finding.rule_id}, {fix} ({tag})"
    )


def _order(finding: Finding) -> tuple[int, str, str]:
    return (-severity_level(finding).rank, str(finding.properties.get("package")), finding.rule_id)


def sarif_log(findings: Iterable[Finding]) -> dict[str, Any]:
    return write_log(findings, tools={TOOL: __version__})


def report_json(
    findings: Sequence[Finding], status: DBStatus, decision: GateDecision | None = None
) -> dict[str, Any]:
    """Conveyor's own JSON report: the database it used, every vulnerability, the verdict."""
    return {
        "tool": {"name": TOOL, "version": __version__},
        "database": {
            "digest": status.digest,
            "advisories": status.advisories,
            "imported_at": status.imported_at,
            "newest_advisory": status.newest_advisory,
            "sources": list(status.sources),
        },
        "vulnerabilities": [_entry(f) for f in findings],
        "gate": None
        if decision is None
        else {"passed": decision.passed, "reasons": decision.reasons, "counts": decision.counts},
    }


def _entry(finding: Finding) -> dict[str, Any]:
    props = finding.properties
    waiver = finding.waiver
    return {
        "id": finding.rule_id,
        "aliases": props.get("aliases", []),
        "package": props.get("package"),
        "installed_version": props.get("installed_version"),
        "fixed_in": props.get("fixed_in"),
        "fixed_versions": props.get("fixed_versions", []),
        "severity": {
            "level": props.get("severity"),
            "cvss_score": props.get("cvss_score"),
            "cvss_vector": props.get("cvss_vector"),
        },
        "summary": props.get("summary", ""),
        "message": finding.message,
        "source": finding.path,
        "fingerprint": finding.fingerprint,
        "disposition": finding.disposition.value,
        "waiver": None
        if waiver is None
        else {"reason": waiver.reason, "owner": waiver.owner, "expires": waiver.expires},
    }
