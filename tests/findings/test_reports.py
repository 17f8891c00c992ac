"""The typed report documents: what writers publish reads back the same, and documents
stored by earlier releases (no `job`, fewer fields, fields since dropped) still load."""

from __future__ import annotations

import json

import pytest

from conveyor.findings.reports import (
    MODELS,
    CoverageDocument,
    E2eReport,
    GateReport,
    PerfReport,
    ReportKind,
    TestsReport,
    VulnScanReport,
    load,
)

# As the a76ae41 code wrote them (steps/testing.py, findings_step.py, perf, scan_image).
OLD_GATE = {"gate": "sast", "passed": False, "reasons": ["1 new error"], "counts": {"error": 1}}
OLD_TESTS = {
    "totals": {"passed": 2, "failed": 1},
    "duration": 1.5,
    "failures": [{"id": "t::bad", "outcome": "failed", "message": "boom", "location": "t.py:3"}],
    "flaky": [],
    "slowest": [{"id": "t::slow", "duration": 0.9}],
}
OLD_PERF = {
    "job": "perf",
    "totals": {"requests": 10, "p95_ms": 40},
    "comparison": {"note": "no baseline", "changes": []},
    "passed": True,
    "reasons": [],
}


def test_an_old_gate_report_loads_with_the_job_from_its_row() -> None:
    gate = load(GateReport, json.dumps(OLD_GATE), "lint")

    assert (gate.job, gate.gate, gate.passed, gate.reasons) == (
        "lint",
        "sast",
        False,
        ["1 new error"],
    )
    assert gate.counts == {"error": 1}


def test_an_old_tests_report_loads_its_failures_and_slowest_tests() -> None:
    tests = load(TestsReport, json.dumps(OLD_TESTS), "test")

    assert [failure.location for failure in tests.failures] == ["t.py:3"]
    assert tests.slowest[0].duration == 0.9


def test_missing_fields_read_as_empty_and_unknown_ones_survive_a_round_trip() -> None:
    perf = load(PerfReport, json.dumps({**OLD_PERF, "added_later": {"x": 1}}), "perf")
    e2e = load(E2eReport, json.dumps(OLD_TESTS), "journeys")  # no target, no artifacts

    assert perf.endpoints == [] and perf.comparison.note == "no baseline"
    assert json.loads(perf.to_bytes())["added_later"] == {"x": 1}
    assert (e2e.target, e2e.artifacts, e2e.totals["failed"]) == ({}, [], 1)


def test_a_scan_without_a_gate_loads() -> None:
    scan = load(VulnScanReport, json.dumps({"database": {"digest": "d"}, "gate": None}))

    assert scan.gate is None and scan.vulnerabilities == []


def test_a_document_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="passed"):
        load(GateReport, json.dumps({"passed": "perhaps"}))


def test_what_a_writer_publishes_reads_back_equal() -> None:
    written = CoverageDocument(job="test", total_percent=81.5, files={"a.py": 50.0})

    assert load(CoverageDocument, written.to_bytes(), "test") == written


def test_every_typed_kind_has_a_model() -> None:
    assert set(MODELS) == set(ReportKind) - {ReportKind.SARIF}
