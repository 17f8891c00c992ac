"""Gate decisions: given findings and a policy, pass or block, and say exactly why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from conveyor.findings.exceptions import short_fingerprint
from conveyor.findings.model import Category, Disposition, Finding, Level
from conveyor.spec.gates import FailLevel, FindingsGate, SecretsGate


@dataclass(frozen=True)
class GateDecision:
    gate: str
    passed: bool
    reasons: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        verdict = "passed" if self.passed else "BLOCKED"
        counts = ", ".join(f"{n} {k}" for k, n in self.counts.items() if n) or "no findings"
        return f"gate {self.gate}: {verdict} ({counts})"


def decide_findings(
    gate: str,
    findings: Iterable[Finding],
    policy: FindingsGate,
    secrets: SecretsGate | None = None,
) -> GateDecision:
    items = list(findings)
    blocking = blocking_findings(items, policy, secrets)
    counts = Counter(f.disposition.value for f in items)
    reasons = [_reason(f) for f in blocking]
    return GateDecision(
        gate=gate,
        passed=not blocking,
        reasons=reasons,
        counts={d.value: counts.get(d.value, 0) for d in Disposition},
    )


def blocking_findings(
    findings: Iterable[Finding], policy: FindingsGate, secrets: SecretsGate | None = None
) -> list[Finding]:
    """The findings that block, most severe first."""
    return sorted((f for f in findings if _blocks(f, policy, secrets)), key=_order)


def _blocks(finding: Finding, policy: FindingsGate, secrets: SecretsGate | None) -> bool:
    if finding.disposition is Disposition.WAIVED:
        return False
    if finding.disposition is Disposition.EXPIRED_WAIVER:
        return True  # the point of an expiry date: it stops waiving
    if finding.category is Category.SECRET and secrets is not None and secrets.fail_on_any:
        return True
    if finding.disposition is Disposition.UNCHANGED and not policy.block_unchanged:
        return False
    if policy.fail_on is FailLevel.NEVER:
        return False
    return finding.level.at_least(Level(policy.fail_on.value))


def _reason(finding: Finding) -> str:
    tag = finding.disposition.value
    if finding.disposition is Disposition.EXPIRED_WAIVER and finding.waiver:
        tag = f"waiver expired {finding.waiver.expires} ({finding.waiver.source})"
    # The fingerprint is what a waiver or `baseline accept` names: shown with every reason.
    return (
        f"{finding.location}: {finding.level.value} {finding.rule_id} [{finding.tool}] "
        f"{finding.message} ({tag}, fingerprint {short_fingerprint(finding)})"
    )


def _order(finding: Finding) -> tuple[int, str, int]:
    return (-finding.level.rank, finding.path or "", finding.start_line or 0)
