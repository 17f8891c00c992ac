"""`.conveyor/exceptions.yml`: waivers for findings of every scanner, each with an expiry.

    exceptions:
      - fingerprint: 3f1c...            # one finding, or
        rule: B608                      # a rule, optionally limited by
        path: "app/legacy/**"           # a path glob
        reason: parameterised upstream; tracked in SHOP-12
        owner: dana@example.com
        expires: 2027-01-31

An entry needs a scope (fingerprint, or rule with or without path), a reason, an owner
and an expiry date. After that date it stops waiving, and the gate says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from conveyor.errors import SpecError
from conveyor.findings.model import Disposition, Finding, Waiver
from conveyor.spec.globs import check_glob, match_any

EXCEPTIONS_FILE = ".conveyor/exceptions.yml"
SHOWN_FINGERPRINT = 16  # hex digits shown and copied: a prefix identifies a finding
WAIVER_DAYS = 90  # the expiry a copied waiver line proposes
WAIVER_REASON = "TODO: why this may stay, and the ticket that removes it"


class ExceptionEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fingerprint: str | None = Field(default=None, min_length=8)
    rule: str | None = Field(default=None, min_length=1)
    path: str | None = None
    tool: str | None = None
    reason: str = Field(min_length=3)
    owner: str = Field(min_length=1)
    expires: date

    @field_validator("path")
    @classmethod
    def _glob(cls, value: str | None) -> str | None:
        return check_glob(value) if value is not None else None

    @field_validator("expires", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> object:
        return iso_date(value)

    @model_validator(mode="after")
    def _scoped(self) -> ExceptionEntry:
        if self.fingerprint is None and self.rule is None:
            raise ValueError("an exception needs a scope: `fingerprint`, or `rule` (and `path`)")
        return self

    def covers(self, finding: Finding) -> bool:
        if self.fingerprint is not None:
            return finding.fingerprint.startswith(self.fingerprint)
        if self.tool is not None and self.tool != finding.tool:
            return False
        if self.rule != finding.rule_id:
            return False
        return self.path is None or (
            finding.path is not None and match_any(finding.path, [self.path])
        )


class ExceptionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    exceptions: list[ExceptionEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class Exceptions:
    entries: tuple[tuple[ExceptionEntry, str], ...]  # entry, "file:line"

    @classmethod
    def none(cls) -> Exceptions:
        return cls(entries=())

    def apply(self, findings: Iterable[Finding], today: date) -> list[Finding]:
        """Mark covered findings waived, or expired-waiver when the entry has expired."""
        return [self._apply_one(finding, today) for finding in findings]

    def _apply_one(self, finding: Finding, today: date) -> Finding:
        expired: tuple[ExceptionEntry, str] | None = None
        for entry, source in self.entries:
            if not entry.covers(finding):
                continue
            if entry.expires >= today:
                return finding.with_disposition(Disposition.WAIVED, _waiver(entry, source))
            expired = expired or (entry, source)
        if expired is not None:
            return finding.with_disposition(Disposition.EXPIRED_WAIVER, _waiver(*expired))
        return finding


def short_fingerprint(finding: Finding) -> str:
    return finding.fingerprint[:SHOWN_FINGERPRINT]


def waiver_line(finding: Finding, owner: str, today: date) -> str:
    """A line to paste under `exceptions:` that waives exactly this finding for 90 days
    (JSON strings are YAML, so any owner name stays one valid scalar)."""
    expires = (today + timedelta(days=WAIVER_DAYS)).isoformat()
    return (
        f"- {{fingerprint: {short_fingerprint(finding)}, reason: {json.dumps(WAIVER_REASON)}, "
        f"owner: {json.dumps(owner)}, expires: {expires}}}"
    )


def _waiver(entry: ExceptionEntry, source: str) -> Waiver:
    return Waiver(
        reason=entry.reason, owner=entry.owner, expires=entry.expires.isoformat(), source=source
    )


def load_exceptions(root: Path) -> Exceptions:
    """The project's exceptions, or none when the file does not exist."""
    path = root / EXCEPTIONS_FILE
    if not path.exists():
        return Exceptions.none()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"cannot read the exceptions file: {error}", file=EXCEPTIONS_FILE) from None
    if not text.strip():
        return Exceptions.none()
    from conveyor.spec.loader import parse_model  # loaded only when there is a file to read

    parsed, locator = parse_model(ExceptionsFile, text, EXCEPTIONS_FILE)
    entries = []
    for index, entry in enumerate(parsed.exceptions):
        position = locator.locate(("exceptions", index))
        line = position[0] if position else 1
        entries.append((entry, f"{EXCEPTIONS_FILE}:{line}"))
    return Exceptions(entries=tuple(entries))


def iso_date(value: object) -> object:
    """A `YYYY-MM-DD` string as a date, with an error a person can read (pydantic's names
    a datetime format); anything else as it is, for pydantic to judge."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}") from None
    return value
