"""A finding, as every scanner's output is normalised into before SARIF is written."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class Level(StrEnum):
    """SARIF result levels, most severe first."""

    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"
    NONE = "none"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Level) -> bool:
        return self.rank >= other.rank


_RANK = {Level.NONE: 0, Level.NOTE: 1, Level.WARNING: 2, Level.ERROR: 3}


class Category(StrEnum):
    LINT = "lint"
    SAST = "sast"
    SECRET = "secret"  # noqa: S105 (a category name, not a password)
    VULNERABILITY = "vulnerability"
    DAST = "dast"
    QUALITY = "quality"  # complexity and duplication (the `quality` step)


class Disposition(StrEnum):
    """What a finding means for this change."""

    NEW = "new"  # not in the target branch's baseline: blocks by default
    UNCHANGED = "unchanged"  # already in the baseline: reported, not blocking by default
    WAIVED = "waived"  # an exception in .conveyor/exceptions.yml covers it
    EXPIRED_WAIVER = "expired-waiver"  # an exception covered it, but has expired: blocks


@dataclass(frozen=True)
class Waiver:
    reason: str
    owner: str
    expires: str  # ISO date
    source: str  # exceptions.yml:line


@dataclass(frozen=True)
class Finding:
    tool: str
    rule_id: str
    level: Level
    message: str
    category: Category
    path: str | None = None  # relative to the project, posix
    start_line: int | None = None
    start_column: int | None = None
    end_line: int | None = None
    snippet: str | None = None  # never set for secrets: the snippet would carry the secret
    fingerprint: str = ""
    rule_name: str | None = None
    help_uri: str | None = None
    disposition: Disposition = Disposition.NEW
    waiver: Waiver | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> str:
        if self.path is None:
            return "(no location)"
        return f"{self.path}:{self.start_line}" if self.start_line else self.path

    def with_disposition(self, disposition: Disposition, waiver: Waiver | None = None) -> Finding:
        return replace(self, disposition=disposition, waiver=waiver)

    @property
    def blocks_by_default(self) -> bool:
        return self.disposition in (Disposition.NEW, Disposition.EXPIRED_WAIVER)
