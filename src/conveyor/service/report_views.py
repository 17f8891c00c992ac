"""A run's reports for a page or the API: which kinds it has with a summary each, and the
documents of one kind (findings grouped new / unchanged / waived with file:line, failed
tests with their messages, coverage, gate decisions, staging's E2E and load tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.findings.model import Disposition, Finding
from conveyor.service.reports import RunReport, run_report
from conveyor.store.store import Store

REPORT_KINDS = ("findings", "tests", "coverage", "gates", "e2e", "perf")


@dataclass(frozen=True)
class ReportSummary:
    kind: str
    documents: int
    summary: dict[str, Any]


def report_summaries(store: Store, run_id: int) -> list[ReportSummary]:
    """The kinds the run has, each with its headline numbers."""
    found = run_report(store, run_id)
    summaries = [
        ReportSummary("findings", 1 if found.findings else 0, _finding_counts(found.findings)),
        ReportSummary("tests", len(found.tests), _test_totals(found)),
        ReportSummary("coverage", len(found.coverage), _coverage(found)),
        ReportSummary("gates", len(found.gates), _gate_counts(found)),
        ReportSummary("e2e", len(found.e2e), {}),
        ReportSummary("perf", len(found.perf), {"passed": all(p.passed for p in found.perf)}),
    ]
    return [summary for summary in summaries if summary.documents]


def report_document(store: Store, run_id: int, kind: str) -> dict[str, Any]:
    found = run_report(store, run_id)
    if kind == "findings":
        return _findings(found.findings)
    if kind == "tests":
        failed = [
            {"job": doc.job, **case.model_dump(mode="json")}
            for doc in found.tests
            for case in doc.failures
        ]
        return {"failed": failed, "documents": found.tests}
    documents: dict[str, list[Any]] = {
        "coverage": list(found.coverage),
        "gates": list(found.gates),
        "e2e": list(found.e2e),
        "perf": list(found.perf),
    }
    return {"documents": documents[kind]}


def _findings(findings: list[Finding]) -> dict[str, Any]:
    grouped: dict[str, list[dict[str, Any]]] = {d.value: [] for d in Disposition}
    for finding in findings:
        grouped[finding.disposition.value].append(
            {
                "location": finding.location,
                "tool": finding.tool,
                "rule_id": finding.rule_id,
                "level": str(finding.level),
                "message": finding.message,
                "category": str(finding.category),
                "path": finding.path,
                "line": finding.start_line,
                "fingerprint": finding.fingerprint,
                "waiver": finding.waiver,
            }
        )
    return {"counts": _finding_counts(findings), **grouped}


def _finding_counts(findings: list[Finding]) -> dict[str, int]:
    counts = {d.value: 0 for d in Disposition}
    for finding in findings:
        counts[finding.disposition.value] += 1
    return counts


def _test_totals(found: RunReport) -> dict[str, int]:
    totals: dict[str, int] = {}
    for doc in found.tests:
        for key, value in doc.totals.items():
            totals[key] = totals.get(key, 0) + value
    return totals


def _coverage(found: RunReport) -> dict[str, float]:
    return {doc.job: doc.total_percent for doc in found.coverage}


def _gate_counts(found: RunReport) -> dict[str, int]:
    passed = sum(1 for gate in found.gates if gate.passed)
    return {"passed": passed, "failed": len(found.gates) - passed}
