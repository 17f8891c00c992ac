"""`conveyor report`: a run's findings, tests, coverage and staging results (E2E journeys,
load tests), read back from its reports."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from conveyor.findings.model import Disposition, Finding
from conveyor.findings.reports import (
    CoverageDocument,
    Document,
    E2eReport,
    GateReport,
    PerfReport,
    ReportKind,
    TestsReport,
    load,
)
from conveyor.findings.sarif import findings_from_log, merge_logs
from conveyor.service.runs import MERGED_SARIF
from conveyor.store.records import RunRecord
from conveyor.store.store import Store


@dataclass(frozen=True)
class RunReport:
    run: RunRecord
    findings: list[Finding]
    sarif: dict[str, Any]
    gates: list[GateReport] = field(default_factory=list)
    tests: list[TestsReport] = field(default_factory=list)  # one per test job
    coverage: list[CoverageDocument] = field(default_factory=list)
    e2e: list[E2eReport] = field(default_factory=list)  # staging's journeys, per job
    perf: list[PerfReport] = field(default_factory=list)  # staging's load tests

    def by_disposition(self) -> dict[Disposition, list[Finding]]:
        grouped: dict[Disposition, list[Finding]] = {d: [] for d in Disposition}
        for finding in self.findings:
            grouped[finding.disposition].append(finding)
        return grouped


def run_report(store: Store, run_id: int) -> RunReport:
    run = store.get_run(run_id)
    merged = store.reports(run_id, MERGED_SARIF)
    if merged:
        sarif = json.loads(store.blobs.get_bytes(merged[-1].digest))
    else:  # a run still going, or one from before merging existed
        sarif = merge_logs(documents(store, run_id, "sarif"))
    return RunReport(
        run=run,
        findings=findings_from_log(sarif),
        sarif=sarif,
        gates=typed_documents(store, run_id, ReportKind.GATE, GateReport),
        tests=typed_documents(store, run_id, ReportKind.TESTS, TestsReport),
        coverage=typed_documents(store, run_id, ReportKind.COVERAGE, CoverageDocument),
        e2e=typed_documents(store, run_id, ReportKind.E2E, E2eReport),
        perf=typed_documents(store, run_id, ReportKind.PERF, PerfReport),
    )


def typed_documents(
    store: Store, run_id: int, kind: ReportKind, model: type[Document]
) -> list[Document]:
    """The run's reports of `kind` as `model`, each with the job that published it."""
    return [
        load(model, store.blobs.get_bytes(record.digest), record.job_id)
        for record in store.reports(run_id, kind.value)
    ]


def documents(store: Store, run_id: int, kind: str) -> list[dict[str, Any]]:
    """The run's reports of `kind`, each a JSON object with the job that published it."""
    documents = []
    for record in store.reports(run_id, kind):
        document = json.loads(store.blobs.get_bytes(record.digest))
        documents.append(
            {"job": record.job_id, **document}
            if isinstance(document, dict)
            else {"job": record.job_id, "data": document}
        )
    return documents
