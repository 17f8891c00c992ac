"""`.conveyor/baseline.yml`: findings a project accepted as existing when it adopted the
gates, so only new problems block before (and after) the target branch's first green run.

    baseline:
      - accepted: 2026-12-07
        owner: dana
        reason: adopting the gates; import order cleaned up in SHOP-40
        run: 3
        commit: 1a2b3c4d5e6f
        findings:
          - {fingerprint: 3f1c0d9e2a7b41c8..., tool: ruff, rule: I001, path: app/views.py}

`conveyor baseline accept` writes it; it is committed and reviewed like the exceptions
file, and the gate reads it from the commit it checks. A finding whose fingerprint is
listed counts as `unchanged`. Unlike a waiver it does not expire: it says "this was here
before we started", which stays true; a waiver says "this may stay until then".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor.errors import SpecError
from conveyor.findings.exceptions import iso_date

BASELINE_FILE = ".conveyor/baseline.yml"
HEADER = (
    "# Findings accepted as existing when the project adopted the gates: they count as\n"
    "# unchanged, not new, so only new problems block. Written by `conveyor baseline\n"
    "# accept`; review changes to this file like code.\n"
)


class AcceptedFinding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fingerprint: str = Field(min_length=8, pattern=r"^[0-9a-f]+$")
    tool: str = Field(min_length=1)
    rule: str = Field(min_length=1)
    path: str | None = None


class Acceptance(BaseModel):
    """One `baseline accept`: who accepted which findings, when, why, from which run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accepted: date
    owner: str = Field(min_length=1)
    reason: str = Field(min_length=3)
    run: int | None = None
    commit: str | None = None
    findings: list[AcceptedFinding] = Field(min_length=1)

    @field_validator("accepted", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> object:
        return iso_date(value)


class BaselineFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline: list[Acceptance] = Field(default_factory=list)


@dataclass(frozen=True)
class AcceptedBaseline:
    acceptances: tuple[Acceptance, ...]

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(f.fingerprint for a in self.acceptances for f in a.findings)

    def with_acceptance(self, acceptance: Acceptance) -> AcceptedBaseline:
        return AcceptedBaseline((*self.acceptances, acceptance))

    def to_yaml(self) -> str:
        import yaml

        data = BaselineFile(baseline=list(self.acceptances)).model_dump(
            mode="json", exclude_none=True
        )
        return HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def load_accepted(root: Path) -> AcceptedBaseline:
    """The project's accepted baseline, or an empty one when the file does not exist."""
    path = root / BASELINE_FILE
    if not path.exists():
        return AcceptedBaseline(())
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"cannot read the baseline file: {error}", file=BASELINE_FILE) from None
    if not text.strip():
        return AcceptedBaseline(())
    from conveyor.spec.loader import parse_model  # loaded only when there is a file to read

    parsed, _ = parse_model(BaselineFile, text, BASELINE_FILE)
    return AcceptedBaseline(tuple(parsed.baseline))
