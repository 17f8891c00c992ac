"""Content fingerprints of real findings: stable when lines move, distinct for repeats."""

from __future__ import annotations

from pathlib import Path

from conveyor.findings.fingerprint import SourceLines, assign_fingerprints
from conveyor.findings.model import Category, Finding, Level
from conveyor.steps.findings_step import FindingsStep
from conveyor.steps.lint import LintStep
from conveyor.steps.sast import SastStep
from steps.conftest import Outcome, run_step, write_files

APP = """\
import os
import sqlite3


def find_user(db_path, name):
    cursor = sqlite3.connect(db_path).cursor()
    cursor.execute(f"SELECT * FROM users WHERE name = '{name}'")
    return cursor.fetchall() + missing
"""
HEADER = "# Copyright the shop.\n# Licensed under Apache-2.0.\n#\n# Users.\n\n"
Located = dict[str, tuple[str, int | None]]


def by_fingerprint(outcome: Outcome) -> Located:
    return {f.fingerprint: (f.rule_id, f.start_line) for f in outcome.findings}


def scan_before_and_after_header(
    tmp_path: Path, step: FindingsStep, params: dict[str, object]
) -> tuple[Located, Located]:
    """Fingerprint -> (rule, line), before and after a 5-line header is inserted."""
    write_files(tmp_path, {"app.py": APP})
    before = by_fingerprint(run_step(step, params, tmp_path))
    write_files(tmp_path, {"app.py": HEADER + APP})
    after = by_fingerprint(run_step(step, params, tmp_path))
    return before, after


def test_lint_fingerprints_survive_lines_inserted_above(tmp_path: Path) -> None:
    before, after = scan_before_and_after_header(tmp_path, LintStep(), {})

    assert {rule for rule, _ in before.values()} == {"F401", "F821"}
    assert set(after) == set(before)
    for fingerprint, (rule, line) in before.items():
        assert line is not None
        assert after[fingerprint] == (rule, line + 5)


def test_sast_fingerprints_survive_lines_inserted_above(tmp_path: Path) -> None:
    before, after = scan_before_and_after_header(tmp_path, SastStep(), {"tools": ["bandit"]})

    assert [rule for rule, _ in before.values()] == ["B608"]
    assert set(after) == set(before)
    assert [line for _, line in after.values()] == [7 + 5]


def test_two_identical_offending_lines_get_two_fingerprints(tmp_path: Path) -> None:
    twice = "def first():\n    return missing\n\n\ndef second():\n    return missing\n"
    write_files(tmp_path, {"app.py": twice})

    findings = run_step(LintStep(), {}, tmp_path).findings

    assert [(f.rule_id, f.start_line) for f in findings] == [("F821", 2), ("F821", 6)]
    assert len({f.fingerprint for f in findings}) == 2
    assert all(len(f.fingerprint) == 32 for f in findings)


def test_the_same_line_in_another_file_or_under_another_rule_differs(tmp_path: Path) -> None:
    write_files(tmp_path, {"a.py": "x = 1\n", "b.py": "x = 1\n"})
    findings = [
        Finding(
            tool="t",
            rule_id=rule,
            level=Level.WARNING,
            message="m",
            category=Category.LINT,
            path=path,
            start_line=1,
        )
        for rule, path in [("R1", "a.py"), ("R1", "b.py"), ("R2", "a.py")]
    ]

    fingerprints = [f.fingerprint for f in assign_fingerprints(findings, SourceLines(tmp_path))]

    assert len(set(fingerprints)) == 3


def test_reindenting_a_line_keeps_its_fingerprint(tmp_path: Path) -> None:
    def fingerprint(source: str, line: int) -> str:
        write_files(tmp_path, {"c.py": source})
        finding = Finding(
            tool="t",
            rule_id="R1",
            level=Level.WARNING,
            message="m",
            category=Category.LINT,
            path="c.py",
            start_line=line,
        )
        return assign_fingerprints([finding], SourceLines(tmp_path))[0].fingerprint

    before = fingerprint("x = compute(1,  2)\n", 1)

    assert fingerprint("if True:\n\n        x   =   compute(1, 2)\n", 3) == before
    assert fingerprint("x = compute(1, 3)\n", 1) != before
