"""The vulnerability gate on real scans: severity threshold, fixable-only, unknown severity,
and waivers from the shared exceptions file (one holding, one expired)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from conveyor.findings.exceptions import Exceptions, load_exceptions
from conveyor.findings.model import Disposition, Finding
from conveyor.spec.images import FailSeverity
from conveyor.supply.osv.db import VulnDB
from conveyor.supply.osv.scan import VulnGate, scan_packages, to_findings

TODAY = date(2025, 6, 1)
# critical (no fix), high (fix 3.9.2), medium (fix 3.9.2), low (fix 23.3)
SCORED = [("apache-skywalking", "8.0.0"), ("aiohttp", "3.9.1"), ("pip", "23.2")]


@pytest.fixture(scope="module")
def scored(real_db: VulnDB) -> list[Finding]:
    return to_findings(scan_packages(real_db, SCORED), source="requirements.txt")


def blocked(gate: VulnGate, findings: list[Finding], exceptions: Exceptions) -> list[str]:
    applied, decision = gate.decide(findings, exceptions, TODAY)
    assert decision.passed is (not decision.reasons)
    return sorted(f.rule_id for f in applied if gate.blocks(f))


def exceptions_file(root: Path, text: str) -> Exceptions:
    (root / ".conveyor").mkdir()
    (root / ".conveyor" / "exceptions.yml").write_text(text)
    return load_exceptions(root)


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (FailSeverity.CRITICAL, ["PYSEC-2020-342"]),
        (FailSeverity.HIGH, ["PYSEC-2020-342", "PYSEC-2024-24"]),
        (FailSeverity.MEDIUM, ["PYSEC-2020-342", "PYSEC-2024-24", "PYSEC-2024-26"]),
        (
            FailSeverity.LOW,
            ["PYSEC-2020-342", "PYSEC-2023-228", "PYSEC-2024-24", "PYSEC-2024-26"],
        ),
    ],
)
def test_the_gate_blocks_at_or_above_its_severity(
    scored: list[Finding], threshold: FailSeverity, expected: list[str]
) -> None:
    assert blocked(VulnGate(fail_on_severity=threshold), scored, Exceptions.none()) == expected


def test_the_default_threshold_is_high_and_says_why(scored: list[Finding]) -> None:
    _, decision = VulnGate().decide(scored, Exceptions.none(), TODAY)

    assert not decision.passed
    assert decision.reasons == [
        "apache-skywalking 8.0.0: critical PYSEC-2020-342, no fix yet (new)",
        "aiohttp 3.9.1: high PYSEC-2024-24, fixed in 3.9.2 (new)",
    ]
    assert decision.counts["critical"] == 1 and decision.counts["low"] == 1


def test_fixable_only_lets_a_vulnerability_without_a_fix_through(scored: list[Finding]) -> None:
    gate = VulnGate(fail_on_severity=FailSeverity.HIGH, fixable_only=True)

    assert blocked(gate, scored, Exceptions.none()) == ["PYSEC-2024-24"]


def test_an_unknown_severity_blocks_unless_told_otherwise(real_db: VulnDB) -> None:
    findings = to_findings(scan_packages(real_db, [("requests", "2.19.0")]), source="sbom.json")

    assert blocked(VulnGate(), findings, Exceptions.none()) == ["PYSEC-2018-28", "PYSEC-2023-74"]
    assert blocked(VulnGate(unknown_blocks=False), findings, Exceptions.none()) == []


def test_a_waiver_lets_the_gate_pass_and_an_expired_one_blocks(
    scored: list[Finding], tmp_path: Path
) -> None:
    exceptions = exceptions_file(
        tmp_path,
        """\
exceptions:
  - rule: PYSEC-2024-24
    path: requirements.txt
    reason: the static file handler is not enabled
    owner: dana@example.com
    expires: 2099-12-31
  - rule: PYSEC-2020-342
    reason: the UI is not exposed
    owner: dana@example.com
    expires: 2025-01-31
""",
    )
    gate = VulnGate()

    applied, decision = gate.decide(scored, exceptions, TODAY)
    dispositions = {f.rule_id: f.disposition for f in applied}

    assert dispositions["PYSEC-2024-24"] is Disposition.WAIVED
    assert dispositions["PYSEC-2020-342"] is Disposition.EXPIRED_WAIVER
    assert not decision.passed
    assert decision.reasons == [
        "apache-skywalking 8.0.0: critical PYSEC-2020-342, no fix yet "
        "(waiver expired 2025-01-31 (.conveyor/exceptions.yml:7))"
    ]
    assert decision.counts["waived"] == 1
    # The same exceptions a day before the expiry: everything at or above high is waived.
    _, earlier = gate.decide(scored, exceptions, date(2025, 1, 31))
    assert earlier.passed


def test_a_fingerprint_waiver_covers_one_package_version_only(
    real_db: VulnDB, tmp_path: Path
) -> None:
    old = to_findings(scan_packages(real_db, [("idna", "3.6")]), source="requirements.txt")
    exceptions = exceptions_file(
        tmp_path,
        f"""\
exceptions:
  - fingerprint: {old[0].fingerprint}
    reason: only trusted host names reach idna here
    owner: dana@example.com
    expires: 2099-12-31
""",
    )
    moved = to_findings(scan_packages(real_db, [("idna", "3.5")]), source="requirements.txt")

    assert VulnGate().decide(old, exceptions, TODAY)[1].passed
    assert not VulnGate().decide(moved, exceptions, TODAY)[1].passed


def test_the_gate_settings_are_validated() -> None:
    with pytest.raises(ValidationError):
        VulnGate.model_validate({"fail_on_severity": "severe"})
    with pytest.raises(ValidationError):
        VulnGate.model_validate({"fail_on": "high"})
