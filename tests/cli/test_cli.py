"""The command line: documented exit codes, JSON output, and the spec-file commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import GitProject, MakeProject, run_cli
from conveyor import __version__
from conveyor.spec.loader import load_pipeline
from conveyor.steps.registry import STEP_PARAMS

SPEC = """\
version: 1
jobs:
  build:
    outputs: [out.txt]
    run: cat message.txt > out.txt && echo "built $(cat out.txt)"
  test:
    needs: [build]
    run: echo tested
  release:
    needs: [test]
    if: {tag: ["v*"]}
    run: echo released
"""


@pytest.fixture
def project(git_project: MakeProject) -> GitProject:
    return git_project(SPEC, {"message.txt": "hello\n"})


def test_a_successful_run_exits_0(project: GitProject) -> None:
    result = run_cli(["run", "-q"], project.root)

    assert result.exit_code == 0, result.stderr
    assert "run 1 success" in result.stdout


def test_a_failing_job_exits_1_and_points_at_its_log(git_project: MakeProject) -> None:
    project = git_project("version: 1\njobs:\n  broken:\n    run: exit 3\n")

    result = run_cli(["run", "-q"], project.root)

    assert result.exit_code == 1
    assert "conveyor logs 1 broken" in result.stdout


def test_a_spec_error_exits_2_with_its_location_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text("version: 1\njobs:\n  build:\n    runn: make\n")

    result = run_cli(["lint"], tmp_path)

    assert result.exit_code == 2
    assert f"{tmp_path / 'conveyor.yml'}:4:5: jobs.build.runn: unknown key 'runn'" in result.stderr
    assert "did you mean 'run'?" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text("version: 1\njobs:\n  build:\n    runn: make\n")

    result = run_cli(["--debug", "lint"], tmp_path)

    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert "unknown key 'runn'" in result.stderr


def test_run_with_a_spec_error_exits_2(git_project: MakeProject) -> None:
    project = git_project("version: 1\njobs:\n  build:\n    needs: [nothing]\n    run: make\n")

    result = run_cli(["run", "-q"], project.root)

    assert result.exit_code == 2
    assert "conveyor.yml:4:" in result.stderr
    assert "unknown job 'nothing' in needs" in result.stderr


def test_a_dirty_tree_exits_2_unless_allowed(project: GitProject) -> None:
    (project.root / "message.txt").write_text("uncommitted\n")

    refused = run_cli(["run", "-q"], project.root)
    allowed = run_cli(["run", "--allow-dirty"], project.root)

    assert refused.exit_code == 2
    assert "uncommitted changes" in refused.stderr
    assert "--allow-dirty" in refused.stderr
    assert allowed.exit_code == 0, allowed.stderr
    assert "built uncommitted" in allowed.stdout


def test_status_history_and_logs_as_json(project: GitProject) -> None:
    assert run_cli(["run", "-q"], project.root).exit_code == 0

    status = run_cli(["status", "-o", "json"], project.root).json()
    history = run_cli(["history", "-o", "json"], project.root).json()
    logs = run_cli(["logs", "1", "build", "-o", "json"], project.root).json()

    assert set(status) == {"run", "jobs"}
    assert {"id", "state", "commit_sha", "branch", "started_at"} <= set(status["run"])
    assert (status["run"]["id"], status["run"]["state"]) == (1, "success")
    assert [(job["job_id"], job["state"]) for job in status["jobs"]] == [
        ("build", "success"),
        ("test", "success"),
        ("release", "skipped"),
    ]
    assert [(run["id"], run["state"], run["branch"]) for run in history] == [(1, "success", "main")]
    assert logs["run"] == 1
    assert list(logs["jobs"]) == ["build"]
    lines = logs["jobs"]["build"]
    assert {"elapsed", "stream", "text"} <= set(lines[0])
    assert {"stream": "stdout", "text": "built hello"} in [
        {"stream": line["stream"], "text": line["text"]} for line in lines
    ]


def test_plan_as_json(project: GitProject) -> None:
    result = run_cli(["plan", "-o", "json"], project.root)

    assert result.exit_code == 0, result.stderr
    plan = result.json()
    assert {"pipeline", "commit", "branch", "tag", "changed_files", "jobs"} <= set(plan)
    assert plan["commit"] == project.git("rev-parse", "HEAD")
    assert plan["branch"] == "main"
    assert [(job["id"], job["status"], job["needs"]) for job in plan["jobs"]] == [
        ("build", "included", []),
        ("test", "included", ["build"]),
        ("release", "skipped", ["test"]),
    ]


def test_plan_explain_gives_each_jobs_reason(project: GitProject) -> None:
    result = run_cli(["plan", "--explain"], project.root)

    assert result.exit_code == 0, result.stderr
    assert "always runs (no if/rules)" in result.stdout
    assert "if: tag (none) not in ['v*']" in result.stdout
    plain = run_cli(["plan"], project.root)
    assert "always runs" not in plain.stdout


def test_init_writes_a_file_that_lint_accepts(tmp_path: Path) -> None:
    written = run_cli(["init", "app"], tmp_path)
    linted = run_cli(["lint", "-f", "app/conveyor.yml", "-o", "json"], tmp_path)
    again = run_cli(["init", "app"], tmp_path)

    assert written.exit_code == 0, written.stderr
    assert load_pipeline(tmp_path / "app" / "conveyor.yml", steps=STEP_PARAMS).pipeline.jobs
    ignore = (tmp_path / "app" / ".conveyor" / ".gitignore").read_text().splitlines()
    assert ignore == ["*", "!exceptions.yml", "!baseline.yml"]
    assert linted.exit_code == 0, linted.stderr
    assert linted.json()["valid"] is True
    assert again.exit_code == 2
    assert "already exists" in again.stderr


def test_schema_prints_a_json_schema(tmp_path: Path) -> None:
    result = run_cli(["schema"], tmp_path)

    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert {"version", "jobs"} <= set(schema["properties"])


def test_status_without_any_run_is_a_user_error(tmp_path: Path) -> None:
    result = run_cli(["status"], tmp_path)

    assert result.exit_code == 2
    assert "no Conveyor state" in result.stderr


def test_logs_of_an_unknown_job_is_not_found(project: GitProject) -> None:
    assert run_cli(["run", "-q"], project.root).exit_code == 0

    result = run_cli(["logs", "1", "deploy"], project.root)

    assert result.exit_code == 4
    assert "run 1 has no job 'deploy'" in result.stderr
    assert "Traceback" not in result.stderr


def test_logs_of_a_job_alone_are_the_latest_runs(project: GitProject) -> None:
    assert run_cli(["run", "-q"], project.root).exit_code == 0
    (project.root / "message.txt").write_text("second\n")
    assert run_cli(["run", "-q", "--allow-dirty"], project.root).exit_code == 0

    latest = run_cli(["logs", "build"], project.root)
    first = run_cli(["logs", "1", "build"], project.root)
    as_json = run_cli(["logs", "build", "-o", "json"], project.root).json()

    assert latest.exit_code == 0, latest.stderr
    assert "built second" in latest.stdout and "built hello" not in latest.stdout
    assert "built hello" in first.stdout and "built second" not in first.stdout
    assert (as_json["run"], list(as_json["jobs"])) == (2, ["build"])


def test_logs_with_a_job_in_the_run_place_and_another_word_is_one_clear_error(
    project: GitProject,
) -> None:
    assert run_cli(["run", "-q"], project.root).exit_code == 0

    result = run_cli(["logs", "build", "test"], project.root)

    assert result.exit_code == 2
    assert "error: RUN must be a run number, not 'build'" in result.stderr
    assert "`conveyor logs test` for the latest run" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_exits_0(tmp_path: Path) -> None:
    result = run_cli(["--version"], tmp_path)

    assert (result.exit_code, result.stdout.strip()) == (0, f"conveyor {__version__}")
