"""Adopting the gates on existing code: `conveyor baseline accept|show`, the fingerprints
and waiver lines of the report and the job log, and the hint for a test fixture's secret."""

from __future__ import annotations

import re

import pytest

from conftest import GitProject, MakeProject, run_cli
from conveyor.findings.accepted import BASELINE_FILE

SPEC = """\
version: 1
jobs:
  lint:
    uses: lint
  secrets:
    uses: secrets
    with: {commits: false}
"""
LEGACY = "import os\n\n\ndef greet(name):\n    return f'hello {name}'\n"
FIXTURE = 'PASSWORD = "hunter2"\n'
NEW_PROBLEM = "\n\ndef shout(name):\n    return greet(name).upper() + exclamation\n"


@pytest.fixture
def project(git_project: MakeProject, monkeypatch: pytest.MonkeyPatch) -> GitProject:
    monkeypatch.setenv("CONVEYOR_ACTOR", "dana@example.com")
    return git_project(SPEC, {"app/views.py": LEGACY, "tests/conftest.py": FIXTURE})


def test_the_first_run_blocks_and_says_how_to_waive_or_accept(project: GitProject) -> None:
    assert run_cli(["run", "-q"], project.root).exit_code == 1

    log = project.log(1, "lint")
    assert re.search(r"F401 \[ruff\] .*\(new, fingerprint [0-9a-f]{16}\)", log)
    assert re.search(r"- \{fingerprint: [0-9a-f]{16}, reason: .*owner: \"dana@example.com\"", log)
    assert "conveyor baseline accept --reason" in log
    secrets_log = project.log(1, "secrets")
    assert "tests/conftest.py" in secrets_log
    assert "`# pragma: allowlist secret`" in secrets_log


def test_a_waive_line_copied_from_the_report_waives_that_finding(project: GitProject) -> None:
    run_cli(["run", "-q"], project.root)

    report = run_cli(["report"], project.root)

    assert report.exit_code == 0, report.stderr
    waive_lines = re.findall(r"waive: (- \{fingerprint: .*\})", report.stdout)
    assert len(waive_lines) == 2  # the unused import and the fixture's password
    ruff_line = next(
        line
        for line, finding in zip(waive_lines, _report_rows(report.stdout), strict=True)
        if "F401" in finding
    )
    project.commit({".conveyor/exceptions.yml": f"exceptions:\n  {ruff_line}\n"})
    assert run_cli(["run", "-q"], project.root).exit_code == 1  # the secret still blocks
    assert project.jobs(2)["lint"].state.value in ("success", "cached")


def test_accepting_the_baseline_lets_only_new_problems_block(project: GitProject) -> None:
    run_cli(["run", "-q"], project.root)

    accepted = run_cli(["baseline", "accept", "--reason", "adopting the gates"], project.root)

    assert accepted.exit_code == 0, accepted.stderr
    assert f"accepted 2 findings of run 1 into {BASELINE_FILE}" in accepted.stdout
    assert "1 secrets still block" in accepted.stdout
    assert "pragma: allowlist secret" in accepted.stdout
    project.commit(
        {"tests/conftest.py": 'PASSWORD = "hunter2"  # pragma: allowlist secret\n'},
        "accept the baseline; mark the fixture",
    )

    assert run_cli(["run", "-q"], project.root).exit_code == 0

    project.commit({"app/views.py": LEGACY + NEW_PROBLEM})
    third = run_cli(["run", "-q"], project.root)
    assert third.exit_code == 1
    log = project.log(3, "lint")
    assert "F821" in log
    assert "✗ app/views.py:1" not in log  # the accepted unused import does not block


def test_the_acceptance_is_in_the_file_and_in_the_audit_log(project: GitProject) -> None:
    run_cli(["run", "-q"], project.root)
    run_cli(["baseline", "accept", "--reason", "adopting the gates"], project.root)

    shown = run_cli(["baseline", "show"], project.root)
    audit = run_cli(["audit", "log", "-o", "json"], project.root)

    assert shown.exit_code == 0, shown.stderr
    assert "2 findings accepted" in shown.stdout
    assert "by dana@example.com (run 1, " in shown.stdout
    assert "adopting the gates" in shown.stdout
    assert re.search(r"[0-9a-f]{16}  app/views.py  F401 \[ruff\]", shown.stdout)
    assert "baseline.accepted" in audit.stdout
    assert "dana@example.com" in audit.stdout
    # Not ignored with the rest of the state folder: it is committed and reviewed.
    assert "?? .conveyor/baseline.yml" in project.git("status", "--porcelain", "-uall")
    assert run_cli(["audit", "verify"], project.root).exit_code == 0


def test_accepting_twice_adds_nothing_and_records_nothing(project: GitProject) -> None:
    run_cli(["run", "-q"], project.root)
    run_cli(["baseline", "accept", "--reason", "adopting the gates"], project.root)
    before = (project.root / BASELINE_FILE).read_text()

    again = run_cli(["baseline", "accept", "--reason", "once more"], project.root)

    assert again.exit_code == 0, again.stderr
    assert "nothing to accept" in again.stdout
    assert (project.root / BASELINE_FILE).read_text() == before


def test_a_reason_is_required(project: GitProject) -> None:
    run_cli(["run", "-q"], project.root)

    missing = run_cli(["baseline", "accept"], project.root)
    blank = run_cli(["baseline", "accept", "--reason", " "], project.root)

    assert missing.exit_code == 2
    assert "--reason" in missing.stderr
    assert blank.exit_code == 2
    assert "--reason must say why" in blank.stderr
    assert not (project.root / BASELINE_FILE).exists()


def test_a_broken_baseline_file_is_a_located_error(project: GitProject) -> None:
    run_cli(["run", "-q"], project.root)
    (project.root / BASELINE_FILE).write_text("baseline:\n  - accepted: yesterday\n")

    result = run_cli(["baseline", "accept", "--reason", "adopting the gates"], project.root)

    assert result.exit_code == 2
    assert f"{BASELINE_FILE}:2:" in result.stderr
    assert "Traceback" not in result.stderr
    assert "accepted: yesterday" in (project.root / BASELINE_FILE).read_text()


def _report_rows(text: str) -> list[str]:
    """The finding lines that precede each `waive:` line."""
    lines = text.splitlines()
    return [lines[i - 1] for i, line in enumerate(lines) if "waive: - {" in line]


def test_run_names_the_run_whose_findings_are_accepted(project: GitProject) -> None:
    run_cli(["run", "-q"], project.root)
    project.commit({"app/views.py": LEGACY + NEW_PROBLEM})
    run_cli(["run", "-q"], project.root)

    accepted = run_cli(
        ["baseline", "accept", "--run", "1", "--reason", "adopting the gates", "-o", "json"],
        project.root,
    )

    assert accepted.exit_code == 0, accepted.stderr
    assert accepted.json()["run"] == 1
    assert len(accepted.json()["accepted"]) == 2  # not run 2's undefined name
    assert "F821" not in (project.root / BASELINE_FILE).read_text()


def test_a_run_without_findings_reports_is_refused(git_project: MakeProject) -> None:
    project = git_project("version: 1\njobs:\n  build:\n    run: echo built\n")
    run_cli(["run", "-q"], project.root)

    result = run_cli(["baseline", "accept", "--reason", "adopting the gates"], project.root)

    assert result.exit_code == 4
    assert "run 1 published no findings" in result.stderr
    assert not (project.root / BASELINE_FILE).exists()
