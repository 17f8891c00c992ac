"""The findings gate on real scans: new against the target branch's baseline, fail_on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conveyor.spec.gates import FindingsGate, Gates
from conveyor.steps.lint import LintStep
from conveyor.steps.sast import SastStep
from steps.conftest import BaselineEvidence, run_step, write_files

APP = "import os\n\n\ndef greet(name):\n    return f'hello {name}' + suffix\n"
NEW_PROBLEM = "\n\ndef shout(name):\n    return greet(name).upper() + exclamation\n"
SQL = (
    "import sqlite3\n\n\ndef find(db, name):\n    cursor = sqlite3.connect(db).cursor()\n"
    "    cursor.execute(f\"SELECT * FROM t WHERE name = '{name}'\")\n"
)


def baseline_of(tmp_path: Path) -> dict[str, Any]:
    """The target branch's SARIF: a lint of APP as it stands."""
    write_files(tmp_path, {"app.py": APP})
    first = run_step(LintStep(), {}, tmp_path)
    assert not first.final.ok
    return first.sarif


def test_findings_already_in_the_baseline_do_not_block(tmp_path: Path) -> None:
    baseline = baseline_of(tmp_path)

    again = run_step(LintStep(), {}, tmp_path, evidence=BaselineEvidence([baseline]))

    assert again.final.ok, again.log.text
    assert [f.disposition.value for f in again.findings] == ["unchanged", "unchanged"]
    assert {r["baselineState"] for r in again.sarif["runs"][0]["results"]} == {"unchanged"}
    assert "gate lint: passed (2 unchanged)" in again.final.detail


def test_block_unchanged_blocks_them(tmp_path: Path) -> None:
    evidence = BaselineEvidence([baseline_of(tmp_path)])

    again = run_step(LintStep(), {"block_unchanged": True}, tmp_path, evidence=evidence)

    assert not again.final.ok
    assert len(again.gate_reasons) == 2
    assert all("(unchanged, fingerprint " in reason for reason in again.gate_reasons)


def test_block_unchanged_can_come_from_the_gates_section(tmp_path: Path) -> None:
    gates = Gates(findings=FindingsGate(block_unchanged=True))
    evidence = BaselineEvidence([baseline_of(tmp_path)], gates=gates)

    assert not run_step(LintStep(), {}, tmp_path, evidence=evidence).final.ok


def test_only_the_new_finding_blocks(tmp_path: Path) -> None:
    baseline = baseline_of(tmp_path)
    write_files(tmp_path, {"app.py": "# a header line\n" + APP + NEW_PROBLEM})

    again = run_step(LintStep(), {}, tmp_path, evidence=BaselineEvidence([baseline]))

    assert not again.final.ok
    new = next(f for f in again.findings if f.disposition.value == "new")
    assert again.gate_reasons == [
        "app.py:10: error F821 [ruff] Undefined name `exclamation` "
        f"(new, fingerprint {new.fingerprint[:16]})"
    ]
    assert "1 new, 2 unchanged" in again.final.detail


def test_fail_on_error_lets_warnings_through(tmp_path: Path) -> None:
    write_files(tmp_path, {"db.py": SQL})

    outcome = run_step(SastStep(), {"tools": ["bandit"], "fail_on": "error"}, tmp_path)

    assert [(f.rule_id, f.level.value) for f in outcome.findings] == [("B608", "warning")]
    assert outcome.final.ok


def test_fail_on_never_only_reports(tmp_path: Path) -> None:
    write_files(tmp_path, {"app.py": APP})

    outcome = run_step(LintStep(), {"fail_on": "never"}, tmp_path)

    assert len(outcome.findings) == 2
    assert outcome.final.ok
    assert "gate lint: passed (2 new)" in outcome.final.detail
