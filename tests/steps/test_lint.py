"""The `lint` step with the real ruff, on small fixture repositories."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from conveyor.states import FailureClass
from conveyor.steps.lint import LintStep
from steps.conftest import run_step, tools_env, write_files

PLANTED = """\
import os


def greet(name):
    return f"hello {name}" + missing_suffix
"""
CLEAN = 'def greet(name):\n    return f"hello {name}"\n'


def test_an_unused_import_and_an_undefined_name_are_found_at_their_lines(
    tmp_path: Path,
) -> None:
    write_files(tmp_path, {"app/greet.py": PLANTED, "app/__init__.py": ""})

    outcome = run_step(LintStep(), {}, tmp_path)

    assert outcome.ran.ok, outcome.log.text
    assert outcome.locations == {
        ("ruff", "F401", "app/greet.py:1"),
        ("ruff", "F821", "app/greet.py:5"),
    }
    assert not outcome.final.ok
    assert outcome.final.failure is FailureClass.EXIT_CODE
    assert any("app/greet.py:5" in reason and "F821" in reason for reason in outcome.gate_reasons)
    assert "lint: 2 files scanned, 2 findings" in outcome.log.text


def test_the_sarif_names_ruff_and_its_version(tmp_path: Path) -> None:
    write_files(tmp_path, {"greet.py": PLANTED})

    driver = run_step(LintStep(), {}, tmp_path).sarif["runs"][0]["tool"]["driver"]

    assert (driver["name"], driver["version"]) == ("ruff", version("ruff"))


def test_a_clean_repository_passes(tmp_path: Path) -> None:
    write_files(tmp_path, {"app/greet.py": CLEAN})

    outcome = run_step(LintStep(), {}, tmp_path)

    assert outcome.final.ok, outcome.log.text
    assert outcome.findings == []
    assert "gate lint: passed" in outcome.final.detail


def test_the_projects_own_ruff_configuration_is_respected(tmp_path: Path) -> None:
    write_files(tmp_path, {"greet.py": PLANTED, "ruff.toml": '[lint]\nignore = ["F401"]\n'})

    outcome = run_step(LintStep(), {}, tmp_path)

    assert outcome.locations == {("ruff", "F821", "greet.py:5")}


def test_only_the_given_paths_are_scanned(tmp_path: Path) -> None:
    write_files(tmp_path, {"app/greet.py": PLANTED, "scripts/old.py": "import sys\n"})

    outcome = run_step(LintStep(), {"paths": ["app"]}, tmp_path)

    assert {f.path for f in outcome.findings} == {"app/greet.py"}
    assert "lint: 1 files scanned" in outcome.log.text


def test_paths_matching_nothing_fail_the_job(tmp_path: Path) -> None:
    write_files(tmp_path, {"app/greet.py": CLEAN})

    outcome = run_step(LintStep(), {"paths": ["nowhere", "src/**/*.py"]}, tmp_path)

    assert not outcome.ran.ok
    assert "scanned no files" in outcome.ran.detail
    assert outcome.final == outcome.ran
    assert outcome.evidence.published == []


def test_ruff_runs_from_conveyors_tool_environment_with_no_ruff_on_path(
    tmp_path: Path,
) -> None:
    """The first-day failure: a job whose PATH has no ruff (or a python without it)."""
    write_files(tmp_path, {"app/greet.py": PLANTED})
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()

    outcome = run_step(LintStep(), {}, tmp_path, env=tools_env(str(empty_bin)))

    assert outcome.ran.ok, outcome.log.text
    assert {f.rule_id for f in outcome.findings} == {"F401", "F821"}
    assert f"lint: ruff {version('ruff')} from Conveyor's tool environment (" in outcome.log.text


def test_a_ruff_on_the_jobs_path_is_used_only_when_the_job_asks_for_it(tmp_path: Path) -> None:
    write_files(tmp_path, {"app/greet.py": CLEAN})
    impostor = _impostor(tmp_path / "bin", "ruff")

    default = run_step(LintStep(), {}, tmp_path, env=tools_env(str(impostor.parent)))
    asked = run_step(
        LintStep(), {"tools_from": "path"}, tmp_path, env=tools_env(str(impostor.parent))
    )

    assert default.final.ok, default.log.text
    assert "the impostor ran" not in default.log.text
    assert not asked.ran.ok
    assert "the impostor ran" in asked.log.text


def test_tools_from_path_with_no_ruff_there_fails_with_the_install_hint(tmp_path: Path) -> None:
    write_files(tmp_path, {"app/greet.py": CLEAN})
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()

    outcome = run_step(LintStep(), {"tools_from": "path"}, tmp_path, env=tools_env(str(empty_bin)))

    assert not outcome.ran.ok
    assert "ruff is not installed on the job's PATH" in outcome.ran.detail
    assert "pip install 'conveyor[scanners]'" in outcome.ran.detail


def _impostor(folder: Path, name: str) -> Path:
    """A program called `name` that says it ran and fails."""
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text("#!/bin/sh\necho the impostor ran\nexit 3\n")
    script.chmod(0o755)
    return script


def test_a_ruff_crash_fails_the_job_with_its_stderr(tmp_path: Path) -> None:
    write_files(tmp_path, {"greet.py": CLEAN, "ruff.toml": "[lint\nselect = 3\n"})

    outcome = run_step(LintStep(), {}, tmp_path)

    assert not outcome.ran.ok
    assert outcome.ran.detail.startswith("ruff failed (exited with code 2)")
    assert "Failed to parse" in outcome.ran.detail
    assert "unclosed table" in outcome.ran.detail
    assert outcome.evidence.published == []
