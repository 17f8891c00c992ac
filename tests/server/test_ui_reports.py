"""A run's findings and tests pages, from the reports its jobs published."""

from __future__ import annotations

import json

from conveyor.findings.model import Category, Disposition, Finding, Level, Waiver
from conveyor.findings.reports import CaseSummary, CoverageDocument, GateReport, TestsReport
from conveyor.findings.sarif import write_log
from server.conftest import ServerUnderTest


def _finding(rule: str, path: str, line: int, disposition: Disposition, **extra: object) -> Finding:
    return Finding(
        tool="ruff",
        rule_id=rule,
        level=Level.ERROR,
        message=f"{rule} <b>here</b>",
        category=Category.LINT,
        path=path,
        start_line=line,
        disposition=disposition,
        **extra,  # type: ignore[arg-type]
    )


def _publish(served: ServerUnderTest, run_id: int) -> None:
    findings = [
        _finding("F401", "app/new.py", 3, Disposition.NEW),
        _finding("E501", "app/old.py", 10, Disposition.UNCHANGED),
        _finding(
            "S105",
            "app/waived.py",
            7,
            Disposition.WAIVED,
            waiver=Waiver("a fixture", "ana", "2099-01-01", "exceptions.yml:3"),
        ),
    ]
    documents = {
        "sarif": json.dumps(write_log(findings, tools={"ruff": "0.6"})).encode(),
        "gate": GateReport(gate="findings", passed=False, reasons=["1 new error"]).to_bytes(),
        "tests": TestsReport(
            totals={"passed": 9, "failed": 1},
            duration=1.5,
            failures=[
                CaseSummary(
                    id="tests/test_a.py::test_b",
                    outcome="failed",
                    message="assert 1 == 2 <oops>",
                    location="tests/test_a.py:4",
                )
            ],
        ).to_bytes(),
        "coverage": CoverageDocument(total_percent=81.25, files={"app/new.py": 50.0}).to_bytes(),
    }
    store = served.context.store
    for kind, content in documents.items():
        store.add_report(run_id, "build", kind, store.blobs.put_bytes(content), {})


def test_the_findings_page_groups_findings_and_shows_the_gates(served: ServerUnderTest) -> None:
    run = served.project.run()
    _publish(served, run.run_id)

    page = served.client.get(f"/runs/{run.run_id}/findings", headers=served.as_user("viewer"))

    assert page.status_code == 200
    text = page.text
    new = text.split('id="findings-new"')[1].split("</section>")[0]
    assert "F401" in new and "app/new.py:3" in new
    assert "E501" in text.split('id="findings-unchanged"')[1].split("</section>")[0]
    waived = text.split('id="findings-waived"')[1].split("</section>")[0]
    assert "app/waived.py:7" in waived and "a fixture (ana, until 2099-01-01)" in waived
    gates = text.split('id="gates"')[1].split("</section>")[0]
    assert "verdict-fail" in gates and "1 new error" in gates
    assert "<b>here</b>" not in text and "&lt;b&gt;here" in text


def test_the_tests_page_shows_failures_and_coverage(served: ServerUnderTest) -> None:
    run = served.project.run()
    _publish(served, run.run_id)

    text = served.client.get(f"/runs/{run.run_id}/tests", headers=served.as_user("viewer")).text

    assert "failed: 1" in text and "passed: 9" in text
    assert "tests/test_a.py::test_b" in text and "assert 1 == 2 &lt;oops&gt;" in text
    assert "81.2%" in text and "app/new.py" in text


def test_a_run_without_reports_says_so(served: ServerUnderTest) -> None:
    run = served.project.run()
    viewer = served.as_user("viewer")
    assert (
        "No gate decided" in served.client.get(f"/runs/{run.run_id}/findings", headers=viewer).text
    )
    assert "No test reports" in served.client.get(f"/runs/{run.run_id}/tests", headers=viewer).text
