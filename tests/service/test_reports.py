"""`run_report` reads each report kind back typed, reports stored by earlier releases
included (they carry no `job`: it comes from the report's row)."""

from __future__ import annotations

import json
from pathlib import Path

from conveyor.findings.reports import CoverageDocument, GateReport, TestsReport
from conveyor.service.reports import run_report
from conveyor.store import NewJob, NewRun, Store


def publish(store: Store, run_id: int, job: str, kind: str, document: bytes) -> None:
    store.add_report(run_id, job, kind, store.blobs.put_report(document), {})


def test_old_and_new_documents_read_back_typed_with_their_job(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        run_id = store.create_run(NewRun("ci"), [NewJob("lint", "lint"), NewJob("test", "test")])
        old_gate = {"gate": "sast", "passed": False, "reasons": ["app.py:3 B608"], "counts": {}}
        publish(store, run_id, "lint", "gate", json.dumps(old_gate).encode())
        new_gate = GateReport(job="test", gate="tests", passed=True)
        publish(store, run_id, "test", "gate", new_gate.to_bytes())
        old_tests = {"totals": {"passed": 3}, "failures": [], "flaky": [], "slowest": []}
        publish(store, run_id, "test", "tests", json.dumps(old_tests).encode())
        coverage = CoverageDocument(job="test", total_percent=90.0, files={"a.py": 90.0})
        publish(store, run_id, "test", "coverage", coverage.to_bytes())

        report = run_report(store, run_id)

    assert [(gate.job, gate.gate, gate.passed) for gate in report.gates] == [
        ("lint", "sast", False),
        ("test", "tests", True),
    ]
    assert report.gates[0].reasons == ["app.py:3 B608"]
    assert report.tests == [TestsReport(job="test", totals={"passed": 3})]
    assert report.coverage == [coverage]
    assert report.e2e == [] and report.perf == []
