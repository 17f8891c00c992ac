"""`conveyor lint` reports every problem of a file at once, as ruff and mypy do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import MakeProject, run_cli
from conveyor.errors import SpecError, SpecErrors
from conveyor.spec.loader import parse_pipeline
from conveyor.steps.registry import STEP_PARAMS

# A typo'd key (line 4) and a needs cycle closed on line 8: two stages of checks.
TYPO_AND_CYCLE = """\
version: 1
jobs:
  build:
    runn: make
    needs: [test]
  test:
    run: pytest
    needs: [build]
"""


def test_a_typo_and_a_needs_cycle_are_both_reported_in_file_order() -> None:
    with pytest.raises(SpecErrors) as caught:
        parse_pipeline(TYPO_AND_CYCLE, "conveyor.yml", steps=STEP_PARAMS)

    problems = caught.value.problems
    assert [(p.line, p.column, p.key_path) for p in problems] == [
        (4, 5, "jobs.build.runn"),
        (8, 13, "jobs.test.needs[0]"),
    ]
    assert "unknown key 'runn'" in problems[0].detail
    assert "cycle: build -> test -> build" in problems[1].detail
    lines = str(caught.value).splitlines()
    assert lines[0] == "2 problems in conveyor.yml"
    assert lines[1].startswith("conveyor.yml:4:5: jobs.build.runn: unknown key 'runn'")
    assert lines[2].startswith("conveyor.yml:8:13: jobs.test.needs[0]: jobs need each other")


def test_a_single_problem_is_a_plain_spec_error() -> None:
    with pytest.raises(SpecError) as caught:
        parse_pipeline(
            "version: 1\njobs:\n  a: {run: x, needs: [zzz]}\n", "conveyor.yml", steps=STEP_PARAMS
        )

    assert not isinstance(caught.value, SpecErrors)
    assert caught.value.problems == (caught.value,)


def test_unknown_step_parameters_and_unknown_needs_are_reported_with_schema_errors() -> None:
    text = """\
version: 1
jobs:
  a: {uses: archive, with: {outptu: x.tar}}
  b: {run: make, cache: maybe, needs: [zzz]}
"""
    with pytest.raises(SpecErrors) as caught:
        parse_pipeline(text, "conveyor.yml", steps=STEP_PARAMS)

    found = {(p.line, p.key_path) for p in caught.value.problems}
    assert (3, "jobs.a.with.outptu") in found
    assert (4, "jobs.b.cache") in found
    assert (4, "jobs.b.needs[0]") in found


def test_a_wrong_version_is_reported_alone() -> None:
    with pytest.raises(SpecError) as caught:
        parse_pipeline("version: 2\njobs:\n  a: {runn: x}\n", "conveyor.yml", steps=STEP_PARAMS)

    assert [p.key_path for p in caught.value.problems] == ["version"]


def test_lint_prints_every_problem_as_file_line_col_and_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "conveyor.yml"
    spec.write_text(TYPO_AND_CYCLE)

    result = run_cli(["lint"], tmp_path)

    assert result.exit_code == 2
    assert f"{spec}:4:5: jobs.build.runn: unknown key 'runn' (did you mean 'run'?)" in (
        result.stderr
    )
    assert f"{spec}:8:13: jobs.test.needs[0]: jobs need each other in a cycle" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_lint_json_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(TYPO_AND_CYCLE)

    result = run_cli(["lint", "-o", "json"], tmp_path)

    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert [(p["line"], p["column"], p["key"]) for p in report["problems"]] == [
        (4, 5, "jobs.build.runn"),
        (8, 13, "jobs.test.needs[0]"),
    ]


def test_run_refuses_with_the_same_list(git_project: MakeProject) -> None:
    project = git_project(TYPO_AND_CYCLE)

    result = run_cli(["run", "-q"], project.root)

    assert result.exit_code == 2
    assert "conveyor.yml:4:5: jobs.build.runn: unknown key 'runn'" in result.stderr
    assert "conveyor.yml:8:13: jobs.test.needs[0]: jobs need each other" in result.stderr
    assert not project.project().run_dir(1).exists()
