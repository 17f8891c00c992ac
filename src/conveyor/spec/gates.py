"""The `gates:` section of conveyor.yml: what blocks a change. Evaluated in findings/gate.py.

Each built-in gate step (`lint`, `sast`, `secrets`, `test`) reads these defaults and may
override them in its own `with:`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class FailLevel(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"
    NEVER = "never"  # report only


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FindingsGate(_Strict):
    fail_on: FailLevel = Field(
        default=FailLevel.WARNING,
        description="Block on new findings at or above this level (error, warning, note, never).",
    )
    block_unchanged: bool = Field(
        default=False, description="Also block on findings the target branch already had."
    )


class SecretsGate(_Strict):
    fail_on_any: bool = Field(
        default=True, description="Any secret blocks, new or not, unless an exception waives it."
    )


class TestsGate(_Strict):
    fail_on_failure: bool = True
    fail_on_flaky: bool = Field(
        default=False, description="Block when a test failed and then passed on a rerun."
    )


class CoverageGate(_Strict):
    min: float | None = Field(default=None, ge=0, le=100, description="Line coverage floor, %.")
    max_drop: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Largest drop in points against the target branch's last successful run.",
    )


class QualityGate(_Strict):
    """What the `quality` step judges (docs/quality.md). Measured per function and per
    copied block; only new offences block (existing ones are baselined)."""

    max_complexity: int = Field(
        default=10, ge=1, le=1000, description="Highest cyclomatic complexity of a function."
    )
    min_duplicate_lines: int = Field(
        default=6,
        ge=3,  # the scan's own floor (steps/quality.py)
        le=10_000,
        description="A copied block of at least this many lines (and tokens) is a finding.",
    )
    min_duplicate_tokens: int = Field(
        default=50, ge=20, le=100_000, description="... and of at least this many tokens."
    )
    max_duplication_ratio: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Highest share of duplicated lines, %; blocks only when above it and "
        "higher than on the target branch's last successful run.",
    )


class Gates(_Strict):
    target_branch: str = Field(
        default="main", description="Baselines come from this branch's last successful run."
    )
    findings: FindingsGate = Field(default_factory=FindingsGate)
    secrets: SecretsGate = Field(default_factory=SecretsGate)
    tests: TestsGate = Field(default_factory=TestsGate)
    coverage: CoverageGate = Field(default_factory=CoverageGate)
    quality: QualityGate = Field(default_factory=QualityGate)
