"""Which advisories affect a package at a version: severity, and the in-memory match index.

The index maps each PEP 503 package name to the affected entries of the (non-withdrawn)
advisories that name it. It is built once from the database in one query; a package's
ranges are parsed into `packaging` versions the first time that package is looked up, so
scanning a hundred packages parses only their ranges, not the whole database's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cvss import CVSS3, CVSS4, CVSSError  # type: ignore[import-untyped]
from packaging.version import Version

from conveyor.supply.osv.versions import (
    EventKind,
    VersionRange,
    canonical_version,
    normalize_name,
    parse_event,
    parse_version,
    smallest_above,
)


class SeverityLevel(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    UNKNOWN = "unknown"  # the advisory carries no usable score or rating

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    SeverityLevel.UNKNOWN: 0,
    SeverityLevel.LOW: 1,
    SeverityLevel.MEDIUM: 2,
    SeverityLevel.HIGH: 3,
    SeverityLevel.CRITICAL: 4,
}
# GitHub's advisory ratings, as found in `database_specific.severity`.
_RATINGS = {
    "critical": SeverityLevel.CRITICAL,
    "high": SeverityLevel.HIGH,
    "moderate": SeverityLevel.MEDIUM,
    "medium": SeverityLevel.MEDIUM,
    "low": SeverityLevel.LOW,
}


class ScoreMethod(StrEnum):
    CVSS_V3 = "CVSS_V3"
    CVSS_V4 = "CVSS_V4"
    RATING = "database_specific"  # a word, no score


@dataclass(frozen=True)
class Severity:
    level: SeverityLevel
    score: float | None = None
    vector: str | None = None
    method: ScoreMethod | None = None

    @classmethod
    def unknown(cls) -> Severity:
        return cls(SeverityLevel.UNKNOWN)


def level_of_score(score: float) -> SeverityLevel:
    """CVSS's qualitative scale; a 0.0 ("none") score counts as low."""
    if score >= 9.0:
        return SeverityLevel.CRITICAL
    if score >= 7.0:
        return SeverityLevel.HIGH
    if score >= 4.0:
        return SeverityLevel.MEDIUM
    return SeverityLevel.LOW


def cvss_base_score(method: ScoreMethod, vector: str) -> float | None:
    """The base score the vector implies (the `cvss` library), or None for a bad vector."""
    try:
        parsed = CVSS3(vector) if method is ScoreMethod.CVSS_V3 else CVSS4(vector)
    except (CVSSError, ValueError, KeyError):
        return None
    return float(parsed.base_score)


def severity_of(scores: Sequence[tuple[str, str]], rating: str | None) -> Severity:
    """The advisory's severity: the highest CVSS v3 score, else v4, else its rating word.

    `scores` are OSV `severity` entries as (type, vector).
    """
    for method in (ScoreMethod.CVSS_V3, ScoreMethod.CVSS_V4):
        scored = [
            (score, vector)
            for kind, vector in scores
            if kind == method.value and (score := cvss_base_score(method, vector)) is not None
        ]
        if scored:
            score, vector = max(scored)
            return Severity(level_of_score(score), score, vector, method)
    level = _RATINGS.get((rating or "").strip().lower())
    return Severity(level, method=ScoreMethod.RATING) if level else Severity.unknown()


@dataclass(frozen=True)
class AdvisoryInfo:
    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: Severity


@dataclass(frozen=True)
class AffectedRow:
    """One stored `affected` entry, not yet parsed (ranges as lists of [kind, version])."""

    package: str
    advisory: AdvisoryInfo
    ranges: Sequence[Sequence[Sequence[str]]]
    versions: Sequence[str]  # canonical_version() of each listed version


@dataclass(frozen=True)
class AffectedEntry:
    advisory: AdvisoryInfo
    ranges: tuple[VersionRange, ...]
    versions: frozenset[str]

    @classmethod
    def compile(cls, row: AffectedRow) -> AffectedEntry:
        ranges = []
        for events in row.ranges:
            parsed = [parse_event(EventKind(kind), text) for kind, text in events]
            ranges.append(VersionRange.of(event for event in parsed if event is not None))
        return cls(row.advisory, tuple(ranges), frozenset(row.versions))

    def affects(self, installed: str, version: Version | None) -> bool:
        if canonical_version(installed) in self.versions:
            return True
        return version is not None and any(r.contains(version) for r in self.ranges)

    def fixed_versions(self) -> list[Version]:
        return [fixed for r in self.ranges for fixed in r.fixed_versions]


@dataclass(frozen=True)
class Match:
    advisory: AdvisoryInfo
    package: str  # PEP 503 name
    installed: str
    fixed_in: str | None  # the smallest fixed version above the installed one
    fixed_versions: tuple[str, ...]  # every fixed version the advisory names, ascending


class MatchIndex:
    """Package name -> affected entries; build once, then look up many packages."""

    def __init__(self, rows: Iterable[AffectedRow], digest: str) -> None:
        self.digest = digest
        self._rows: dict[str, list[AffectedRow]] = defaultdict(list)
        for row in rows:
            self._rows[row.package].append(row)
        self._compiled: dict[str, list[AffectedEntry]] = {}

    @property
    def packages(self) -> int:
        return len(self._rows)

    def matches(self, name: str, installed: str) -> list[Match]:
        """Every advisory affecting `name` at `installed`, once each, sorted by id."""
        package = normalize_name(name)
        version = parse_version(installed.strip())
        by_advisory: dict[str, list[AffectedEntry]] = defaultdict(list)
        for entry in self._entries(package):
            if entry.affects(installed, version):
                by_advisory[entry.advisory.id].append(entry)
        return [
            _match(package, installed, version, entries)
            for _, entries in sorted(by_advisory.items())
        ]

    def _entries(self, package: str) -> list[AffectedEntry]:
        compiled = self._compiled.get(package)
        if compiled is None:
            compiled = [AffectedEntry.compile(row) for row in self._rows.get(package, ())]
            self._compiled[package] = compiled
        return compiled


def _match(
    package: str, installed: str, version: Version | None, entries: list[AffectedEntry]
) -> Match:
    fixed = sorted({fixed for entry in entries for fixed in entry.fixed_versions()})
    fixed_in = smallest_above(fixed, version) if version is not None else None
    return Match(
        advisory=entries[0].advisory,
        package=package,
        installed=installed,
        fixed_in=str(fixed_in) if fixed_in is not None else None,
        fixed_versions=tuple(str(v) for v in fixed),
    )
