"""Scanning real packages against the real PyPA advisories (CC-BY 4.0): true positives and
negatives checked against the data, and their findings."""

from __future__ import annotations

from conveyor.findings.model import Category, Level
from conveyor.supply.osv.db import VulnDB
from conveyor.supply.osv.match import SeverityLevel
from conveyor.supply.osv.scan import (
    TOOL,
    Vulnerability,
    scan_packages,
    to_findings,
    vulnerability_fingerprint,
)


def ids(db: VulnDB, name: str, version: str) -> set[str]:
    return {v.advisory_id for v in scan_packages(db, [(name, version)])}


def only(db: VulnDB, name: str, version: str, advisory_id: str) -> Vulnerability:
    return next(v for v in scan_packages(db, [(name, version)]) if v.advisory_id == advisory_id)


def test_requests_2_19_0_is_affected_by_cve_2018_18074_and_2_20_0_is_not(real_db: VulnDB) -> None:
    vulnerability = only(real_db, "requests", "2.19.0", "PYSEC-2018-28")

    assert vulnerability.aliases == ("CVE-2018-18074", "GHSA-x84v-xcm2-53pg")
    assert vulnerability.fixed_in == "2.20.0"
    assert "2.20.0" in vulnerability.fixed_versions
    assert vulnerability.severity.level is SeverityLevel.UNKNOWN  # PYSEC has no CVSS here
    assert vulnerability.summary.startswith("The Requests package before 2.20.0")
    assert "PYSEC-2018-28" not in ids(real_db, "requests", "2.20.0")


def test_names_are_matched_pep_503_normalised(real_db: VulnDB) -> None:
    assert "PYSEC-2018-28" in ids(real_db, "Requests", "2.19.0")
    # The advisory spells the package `jw.util`; pip and SBOMs say jw_util or jw-util.
    for spelling in ("jw.util", "jw_util", "JW-Util"):
        assert ids(real_db, spelling, "2.2") == {"PYSEC-2020-341"}
    assert ids(real_db, "jw-util", "2.3") == set()


def test_last_affected_is_inclusive_on_real_data(real_db: VulnDB) -> None:
    # py: introduced 0, last_affected 1.11.0; no fix was ever released.
    vulnerability = only(real_db, "py", "1.11.0", "PYSEC-2022-42969")

    assert vulnerability.fixed_in is None
    assert vulnerability.fixed_versions == ()
    assert ids(real_db, "py", "1.11.1") == set()


def test_an_advisory_with_only_explicit_versions(real_db: VulnDB) -> None:
    # gratient 0.5 shipped credential-harvesting code; only that release is listed.
    assert ids(real_db, "gratient", "0.5") == {"PYSEC-2024-1"}
    assert ids(real_db, "gratient", "0.5.0") == {"PYSEC-2024-1"}  # same PEP 440 version
    assert ids(real_db, "gratient", "0.4") == set()
    assert ids(real_db, "gratient", "0.6") == set()


def test_withdrawn_advisories_are_ignored(real_db: VulnDB) -> None:
    # PYSEC-2022-43059 (aiohttp, every version, no fix) and PYSEC-2023-73 (redis, 3.0.0
    # listed) were withdrawn; they stay in the database but never match.
    assert real_db.advisory("PYSEC-2022-43059") is not None
    assert "PYSEC-2022-43059" not in ids(real_db, "aiohttp", "3.9.1")
    assert "PYSEC-2023-73" not in ids(real_db, "redis", "3.0.0")


def test_the_fix_offered_is_the_smallest_one_above_the_installed_version(
    real_db: VulnDB,
) -> None:
    aiohttp = only(real_db, "aiohttp", "3.9.1", "PYSEC-2024-24")

    assert aiohttp.fixed_in == "3.9.2"
    assert aiohttp.severity.level is SeverityLevel.HIGH
    assert ids(real_db, "aiohttp", "3.9.2") == set()


def test_unknown_packages_and_invalid_versions_do_not_fail_the_scan(real_db: VulnDB) -> None:
    assert scan_packages(real_db, [("no-such-package-anywhere", "1.0")]) == []
    # An invalid version cannot be placed in a range; it only matches listed versions.
    assert ids(real_db, "requests", "not-a-version") == set()


def test_results_are_deduplicated_and_most_severe_first(real_db: VulnDB) -> None:
    found = scan_packages(
        real_db,
        [("pip", "23.2"), ("aiohttp", "3.9.1"), ("apache-skywalking", "8.0.0"), ("PIP", "23.2")],
    )

    assert [(v.advisory_id, v.severity.level.value) for v in found] == [
        ("PYSEC-2020-342", "critical"),
        ("PYSEC-2024-24", "high"),
        ("PYSEC-2024-26", "medium"),
        ("PYSEC-2023-228", "low"),
    ]


def test_findings_carry_level_location_fingerprint_and_fix(real_db: VulnDB) -> None:
    vulnerabilities = scan_packages(
        real_db, [("aiohttp", "3.9.1"), ("pip", "23.2"), ("requests", "2.19.0")]
    )
    findings = {f.rule_id: f for f in to_findings(vulnerabilities, source="requirements.txt")}

    high = findings["PYSEC-2024-24"]
    assert (high.tool, high.category, high.level) == (TOOL, Category.VULNERABILITY, Level.ERROR)
    assert findings["PYSEC-2024-26"].level is Level.WARNING
    assert findings["PYSEC-2023-228"].level is Level.NOTE
    assert findings["PYSEC-2018-28"].level is Level.WARNING  # unknown severity
    assert high.path == "requirements.txt" and high.start_line is None
    assert high.properties["fixed_in"] == "3.9.2"
    assert high.properties["aliases"] == ["CVE-2024-23334", "GHSA-5h86-8mv2-jq9f"]
    assert high.fingerprint == vulnerability_fingerprint("PYSEC-2024-24", "aiohttp", "3.9.1")
    assert high.help_uri == "https://osv.dev/vulnerability/PYSEC-2024-24"


def test_fingerprints_depend_on_advisory_package_and_version_only(real_db: VulnDB) -> None:
    vulnerabilities = scan_packages(real_db, [("requests", "2.19.0")])
    in_sbom = to_findings(vulnerabilities, source="sbom.cdx.json")
    in_image = to_findings(vulnerabilities, source="image:sha256:" + "a" * 64)

    assert [f.fingerprint for f in in_sbom] == [f.fingerprint for f in in_image]
    assert vulnerability_fingerprint("PYSEC-2018-28", "Requests", "2.19.0") == (
        vulnerability_fingerprint("PYSEC-2018-28", "requests", "2.19.0")
    )
    assert vulnerability_fingerprint("PYSEC-2018-28", "requests", "2.19.1") != (
        vulnerability_fingerprint("PYSEC-2018-28", "requests", "2.19.0")
    )
