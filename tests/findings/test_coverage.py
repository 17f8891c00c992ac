"""coverage.py's JSON report read into totals and per-file percentages, and the gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.findings import coverage
from conveyor.spec.gates import CoverageGate


def real_coverage_json(tmp_path: Path) -> bytes:
    """coverage.py itself measures a small program: one of its 8 statements never runs."""
    (tmp_path / "prog.py").write_text(
        "def used():\n    return 1\n\ndef unused():\n    return 2\n\nused()\n"
    )
    (tmp_path / "other.py").write_text("X = 1\n")
    (tmp_path / "main.py").write_text("import prog\nimport other\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV")}
    for argv in (["run", "main.py"], ["json", "-o", "cov.json"]):
        subprocess.run(
            [sys.executable, "-m", "coverage", *argv],
            cwd=tmp_path,
            env=env,
            check=True,
            capture_output=True,
        )
    return (tmp_path / "cov.json").read_bytes()


def test_a_real_report_gives_the_total_and_each_file(tmp_path: Path) -> None:
    report = coverage.parse_coverage_py(real_coverage_json(tmp_path))
    assert report.files["prog.py"] == pytest.approx(80.0)  # 4 of 5 statements ran
    assert report.files["other.py"] == 100.0
    assert report.files["main.py"] == 100.0
    assert report.total_percent == pytest.approx(87.5)
    assert report.below(90) == {"prog.py": pytest.approx(80.0)}


def test_files_below_a_floor_come_lowest_first() -> None:
    report = coverage.CoverageReport(70.0, {"a.py": 90.0, "b.py": 40.0, "c.py": 60.0})
    assert list(report.below(65)) == ["b.py", "c.py"]


def test_the_published_report_reads_back() -> None:
    report = coverage.CoverageReport(70.0, {"b.py": 40.0, "a.py": 90.0})
    content = json.dumps({"job": "test", **report.to_json()}).encode()
    assert coverage.report_from_json(content) == report


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"files": {}}', "no 'totals'"),
        (b'{"totals": {"percent_covered": 50}, "files": {"a.py": {}}}', "no 'summary'"),
    ],
)
def test_what_is_not_a_coverage_report_is_refused(content: bytes, error: str) -> None:
    with pytest.raises(coverage.CoverageError, match=error):
        coverage.parse_coverage_py(content)


def test_the_floor_blocks_below_it_and_not_at_it() -> None:
    policy = CoverageGate(min=80)
    low = coverage.gate_reasons(coverage.CoverageReport(79.9), None, policy)
    assert low == ["coverage 79.9% is below the floor of 80%"]
    assert coverage.gate_reasons(coverage.CoverageReport(80.0), None, policy) == []


def test_a_drop_beyond_max_drop_blocks_and_a_smaller_one_does_not() -> None:
    policy = CoverageGate(max_drop=2)
    baseline = coverage.CoverageReport(90.0)
    assert coverage.gate_reasons(coverage.CoverageReport(88.5), baseline, policy) == []
    assert coverage.gate_reasons(coverage.CoverageReport(87.0), baseline, policy) == [
        "coverage dropped 3.0 points (90.0% -> 87.0%), more than max_drop 2"
    ]
    assert coverage.gate_reasons(coverage.CoverageReport(10.0), None, policy) == []
