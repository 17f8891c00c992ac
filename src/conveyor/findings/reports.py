"""The report documents jobs publish (evidence blobs in the store, by kind), typed.

Writers (steps, verify, supply) build these models and publish their JSON; readers
(`conveyor report`, the release record) load them back with `load`. Every field has a
default and unknown fields are kept, so a report stored by an older (or newer) Conveyor
still loads: what it lacks reads as empty, what it adds survives a round trip.
`job` is the publishing job; the reader sets it from the report's row (documents stored
before it was written carry none).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class ReportKind(StrEnum):
    SARIF = "sarif"
    GATE = "gate"
    TESTS = "tests"
    COVERAGE = "coverage"
    E2E = "e2e"
    PERF = "perf"
    DAST = "dast"
    VULN_SCAN = "vuln-scan"
    QUALITY = "quality"


class _Part(BaseModel):
    """A part of a document: unknown fields kept, like the document's own."""

    model_config = ConfigDict(extra="allow")


class ReportDocument(_Part):
    job: str = ""  # the publishing job

    def to_bytes(self) -> bytes:
        """The document as published."""
        return self.model_dump_json().encode()


class GateReport(ReportDocument):
    """A gate's decision: kind "gate"."""

    gate: str | None = None
    passed: bool = False
    reasons: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)


class CaseSummary(_Part):
    id: str = ""
    outcome: str = ""
    message: str | None = None
    location: str | None = None


class SlowTest(_Part):
    id: str = ""
    duration: float = 0.0


class TestsReport(ReportDocument):
    """A test run: kind "tests" (and the base of "e2e")."""

    __test__ = False  # not a pytest class, whatever its name

    totals: dict[str, int] = Field(default_factory=dict)
    duration: float = 0.0
    failures: list[CaseSummary] = Field(default_factory=list)
    flaky: list[CaseSummary] = Field(default_factory=list)
    slowest: list[SlowTest] = Field(default_factory=list)


class E2eArtifact(_Part):
    test: str = ""
    kind: str = ""
    file: str = ""
    bytes: int = 0
    digest: str = ""


class E2eReport(TestsReport):
    """End-to-end journeys against a running environment: kind "e2e"."""

    target: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[E2eArtifact] = Field(default_factory=list)


class CoverageDocument(ReportDocument):
    """Line coverage: kind "coverage" (path -> percent covered)."""

    total_percent: float = 0.0
    files: dict[str, float] = Field(default_factory=dict)


class PerfComparison(_Part):
    note: str | None = None
    baseline_release: str | None = None
    max_regression: float | None = None
    changes: list[dict[str, Any]] = Field(default_factory=list)


class PerfReport(ReportDocument):
    """A load test: kind "perf". A later run reads `settings` and `totals` back as its
    baseline (conveyor.verify.perf.BaselineReport)."""

    target: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    totals: dict[str, Any] = Field(default_factory=dict)
    endpoints: list[dict[str, Any]] = Field(default_factory=list)
    errors: list[dict[str, Any]] = Field(default_factory=list)
    exceptions: list[dict[str, Any]] = Field(default_factory=list)
    thresholds: dict[str, Any] = Field(default_factory=dict)
    comparison: PerfComparison = Field(default_factory=PerfComparison)
    passed: bool = False
    reasons: list[str] = Field(default_factory=list)


class DastToolRun(_Part):
    version: str | None = None
    exercised: int = 0
    unit: str = ""
    findings: int = 0


class DastReport(ReportDocument):
    """A dynamic scan of a running environment: kind "dast"."""

    target: dict[str, Any] = Field(default_factory=dict)
    openapi: str | None = None
    tools: dict[str, DastToolRun] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    passed: bool = False
    gate: str | None = None  # the gate's one-line verdict


class ScanGate(_Part):
    passed: bool | None = None
    reasons: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)


class VulnScanReport(ReportDocument):
    """An image's vulnerability scan: kind "vuln-scan" (also `conveyor scan --format json`)."""

    tool: dict[str, Any] = Field(default_factory=dict)
    database: dict[str, Any] = Field(default_factory=dict)
    vulnerabilities: list[dict[str, Any]] = Field(default_factory=list)
    gate: ScanGate | None = None


class ComplexitySummary(_Part):
    """Cyclomatic complexity per function, over the files the job measured."""

    functions: int = 0
    mean: float | None = None  # None: no function measured (never "0, fine")
    max: int | None = None
    worst: str | None = None  # "path:line name" of the most complex function
    threshold: int | None = None
    over_threshold: int = 0


class DuplicationSummary(_Part):
    """Copied blocks at least `min_lines` lines and `min_tokens` tokens long."""

    files: int = 0
    lines: int = 0
    duplicated_lines: int = 0
    ratio: float | None = None  # % of the lines; None: no line measured
    blocks: int = 0
    min_lines: int | None = None
    min_tokens: int | None = None
    max_ratio: float | None = None


class QualityReport(ReportDocument):
    """Complexity and duplication of one `quality` job: kind "quality" (docs/quality.md)."""

    tools: dict[str, str] = Field(default_factory=dict)
    complexity: ComplexitySummary = Field(default_factory=ComplexitySummary)
    duplication: DuplicationSummary = Field(default_factory=DuplicationSummary)
    passed: bool = False
    reasons: list[str] = Field(default_factory=list)


Document = TypeVar("Document", bound=ReportDocument)

MODELS: dict[ReportKind, type[ReportDocument]] = {
    ReportKind.GATE: GateReport,
    ReportKind.TESTS: TestsReport,
    ReportKind.COVERAGE: CoverageDocument,
    ReportKind.E2E: E2eReport,
    ReportKind.PERF: PerfReport,
    ReportKind.DAST: DastReport,
    ReportKind.VULN_SCAN: VulnScanReport,
    ReportKind.QUALITY: QualityReport,
}


def load(model: type[Document], content: bytes | str, job: str = "") -> Document:
    """A stored document as `model`; `job` is the job that published it."""
    document = model.model_validate_json(content)
    document.job = job
    return document
