"""Globs are checked after brace expansion: no absolute path, no `..`, no `.conveyor/`."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from conveyor.errors import SpecError
from conveyor.spec.globs import check_glob, check_output_glob
from conveyor.spec.loader import parse_pipeline
from conveyor.steps.registry import STEP_PARAMS


@pytest.mark.parametrize(
    ("pattern", "expanded"),
    [
        ("{..,x}/{..,x}/secrets.env", "../../secrets.env"),
        ("{/abs/path,x}", "/abs/path"),
        ("{.,x}./secrets.env", "../secrets.env"),  # `..` made of two halves
        ("{,x}/etc/passwd", "/etc/passwd"),
        ("!{..,x}/y", "../y"),
    ],
)
def test_a_glob_that_leaves_the_workspace_once_expanded_is_refused(
    pattern: str, expanded: str
) -> None:
    with pytest.raises(ValueError, match="workspace") as caught:
        check_glob(pattern)

    assert f"(as {expanded!r})" in str(caught.value)


def test_escaped_dots_are_still_dot_dot() -> None:
    with pytest.raises(ValueError, match="must not leave the workspace"):
        check_glob(r"\.\./secrets.env")


def test_a_brace_bomb_is_refused() -> None:
    with pytest.raises(ValueError, match="expands to more than 1000 patterns"):
        check_glob("{a,b}" * 11)


@pytest.mark.parametrize(
    "pattern",
    [".conveyor/secrets.env", "{.conveyor,x}/secrets.env", ".conv*/x", "[.]conveyor/x", ".*/x"],
)
def test_an_output_glob_naming_the_state_folder_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"reaches into \.conveyor/"):
        check_output_glob(pattern)


@pytest.mark.parametrize(
    "pattern", ["dist/**", "**", "*/report.xml", ".conveyor-out/**/findings.json", "{a,b}/*.txt"]
)
def test_ordinary_output_globs_pass(pattern: str) -> None:
    assert check_output_glob(pattern) == pattern


def test_inputs_may_read_the_state_folder_policy_file() -> None:
    """The committed exceptions file is policy a job may depend on; only outputs are barred."""
    assert check_glob(".conveyor/exceptions.yml") == ".conveyor/exceptions.yml"


ATTACK = """\
version: 1
jobs:
  steal:
    run: "true"
    outputs:
      - dist/**
      - "{..,x}/{..,x}/{..,x}/secrets.env"
      - "{/abs/path,x}"
"""


def test_the_attack_is_a_lint_error_naming_each_key() -> None:
    with pytest.raises(SpecError) as caught:
        parse_pipeline(ATTACK, "conveyor.yml", steps=STEP_PARAMS)

    problems = caught.value.problems
    assert [(p.line, p.column, p.key_path) for p in problems] == [
        (7, 9, "jobs.steal.outputs[1]"),
        (8, 9, "jobs.steal.outputs[2]"),
    ]
    assert "(as '../../../secrets.env') must not leave the workspace" in problems[0].detail
    assert "(as '/abs/path') must be relative to the workspace" in problems[1].detail


def test_lint_exits_2_on_the_attack(tmp_path: Path) -> None:
    spec = tmp_path / "conveyor.yml"
    spec.write_text(ATTACK)

    result = run_cli(["lint"], tmp_path)

    assert result.exit_code == 2
    assert f"{spec}:7:9: jobs.steal.outputs[1]: glob" in result.stderr
    assert f"{spec}:8:9: jobs.steal.outputs[2]: glob" in result.stderr
