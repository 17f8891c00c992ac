"""OSV range semantics in PEP 440 order, names and versions, and CVSS severities."""

from __future__ import annotations

import pytest
from packaging.version import Version

from conveyor.supply.osv.match import (
    ScoreMethod,
    SeverityLevel,
    cvss_base_score,
    level_of_score,
    severity_of,
)
from conveyor.supply.osv.versions import (
    EventKind,
    VersionRange,
    canonical_version,
    normalize_name,
    parse_event,
    parse_version,
    smallest_above,
)


def version_range(*events: tuple[str, str]) -> VersionRange:
    parsed = [parse_event(EventKind(kind), text) for kind, text in events]
    assert all(event is not None for event in parsed)
    return VersionRange.of(event for event in parsed if event is not None)


def affected(candidate: str, *events: tuple[str, str]) -> bool:
    return version_range(*events).contains(Version(candidate))


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [("0.0.1", True), ("2.19.1", True), ("2.20.0", False), ("2.20.0rc1", True), ("3.0", False)],
)
def test_introduced_zero_to_fixed_is_half_open(candidate: str, expected: bool) -> None:
    assert affected(candidate, ("introduced", "0"), ("fixed", "2.20.0")) is expected


@pytest.mark.parametrize(
    ("candidate", "expected"), [("1.11.0", True), ("1.11", True), ("1.11.0.post1", False)]
)
def test_last_affected_is_inclusive(candidate: str, expected: bool) -> None:
    assert affected(candidate, ("introduced", "0"), ("last_affected", "1.11.0")) is expected


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [("0.9", False), ("1.0", True), ("1.4", True), ("1.5", False), ("2.1", True), ("2.5", False)],
)
def test_two_spans_in_one_range_in_any_order(candidate: str, expected: bool) -> None:
    events = (("fixed", "2.5"), ("introduced", "2.0"), ("fixed", "1.5"), ("introduced", "1.0"))
    assert affected(candidate, *events) is expected


def test_an_open_range_affects_everything_after_introduced() -> None:
    assert affected("99.0", ("introduced", "1.0"))
    assert not affected("0.9", ("introduced", "1.0"))


def test_limit_caps_the_range() -> None:
    events = (("introduced", "0"), ("limit", "3.0"))
    assert affected("2.9", *events)
    assert not affected("3.0", *events)
    assert not affected("4.0", *events)


def test_unparsable_versions_are_refused_except_the_start() -> None:
    assert parse_event(EventKind.FIXED, "2019-09-12") is None
    assert parse_event(EventKind.FIXED, "0.2.0-n653") is None
    start = parse_event(EventKind.INTRODUCED, "0")
    assert start is not None and start.version is None
    assert parse_version("not a version") is None


def test_canonical_versions_compare_equal_spellings() -> None:
    assert canonical_version("2.19.0") == canonical_version("2.19")
    assert canonical_version("0.12.01") == canonical_version("0.12.1")
    assert canonical_version("1.0-Alpha2") == canonical_version("1.0a2")
    assert canonical_version("-class.-jw.util.version.Version-") == (
        "-class.-jw.util.version.Version-"
    )


@pytest.mark.parametrize(
    "name", ["requests-toolbelt", "requests_toolbelt", "Requests.Toolbelt", "REQUESTS__toolbelt"]
)
def test_pep_503_names(name: str) -> None:
    assert normalize_name(name) == "requests-toolbelt"


def test_smallest_fix_above_the_installed_version() -> None:
    fixes = [Version("2.4.2"), Version("2.5.1"), Version("2.6.0")]
    assert smallest_above(fixes, Version("2.5.0")) == Version("2.5.1")
    assert smallest_above(fixes, Version("2.6.0")) is None
    assert smallest_above(fixes, None) == Version("2.4.2")


def test_cvss_v3_base_scores() -> None:
    critical = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    low = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:L/A:N"
    assert cvss_base_score(ScoreMethod.CVSS_V3, critical) == 9.8
    assert cvss_base_score(ScoreMethod.CVSS_V3, low) == 3.3
    assert cvss_base_score(ScoreMethod.CVSS_V3, "CVSS:3.1/AV:N/garbage") is None


def test_cvss_v4_base_score() -> None:
    vector = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
    assert cvss_base_score(ScoreMethod.CVSS_V4, vector) == 9.3


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (10.0, SeverityLevel.CRITICAL),
        (9.0, SeverityLevel.CRITICAL),
        (8.9, SeverityLevel.HIGH),
        (7.0, SeverityLevel.HIGH),
        (6.9, SeverityLevel.MEDIUM),
        (4.0, SeverityLevel.MEDIUM),
        (3.9, SeverityLevel.LOW),
        (0.0, SeverityLevel.LOW),
    ],
)
def test_qualitative_scale(score: float, level: SeverityLevel) -> None:
    assert level_of_score(score) is level


def test_severity_prefers_the_highest_v3_score_then_v4_then_the_rating() -> None:
    v3_high = ("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H")
    v3_low = ("CVSS_V3", "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:L/A:N")
    v4 = ("CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N")

    assert severity_of([v3_low, v3_high, v4], None).score == 7.5
    assert severity_of([v4], "LOW").level is SeverityLevel.CRITICAL
    assert severity_of([], "MODERATE").level is SeverityLevel.MEDIUM
    assert severity_of([("CVSS_V3", "nonsense")], None).level is SeverityLevel.UNKNOWN
