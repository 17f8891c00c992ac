"""Expression values are data in shell commands: a hostile branch name runs nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from conftest import GitProject, MakeProject
from conveyor.engine.plan import build_plan
from conveyor.spec.loader import parse_pipeline
from conveyor.states import RunState
from conveyor.steps.registry import STEP_PARAMS, STEPS
from conveyor.steps.testing import TestParams
from conveyor.vcs.git import GitContext

HOSTILE_BRANCH = 'x";touch${IFS}PWNED;echo"'
HOSTILE_WORD = "a';touch PWNED2;'$(touch PWNED3)`touch PWNED4`"

SPEC = """\
version: 1
jobs:
  show:
    run:
      - echo "quoted=${{ git.branch }}"
      - echo bare=${{ git.branch }}
      - echo "sha=${{ git.short_sha }}"
  words:
    matrix:
      word: ["a';touch PWNED2;'$(touch PWNED3)`touch PWNED4`"]
    run: echo "word=${{ matrix.word }}"
"""


def job_log(project: GitProject, run_id: int, job_id: str) -> str:
    return project.log(run_id, job_id)


def test_a_hostile_branch_name_is_printed_not_run(git_project: MakeProject) -> None:
    project = git_project(SPEC)
    project.git("checkout", "-q", "-b", HOSTILE_BRANCH)
    sha = project.git("rev-parse", "HEAD")

    outcome = project.run()

    assert outcome.state is RunState.SUCCESS
    workspace = project.workspace(outcome.run_id)
    planted = [p for p in (workspace, project.root, Path.cwd()) if list(p.glob("PWNED*"))]
    assert planted == []
    log = job_log(project, outcome.run_id, "show")
    assert f"quoted={HOSTILE_BRANCH}\n" in log
    assert f"bare={HOSTILE_BRANCH}\n" in log
    assert f"sha={sha[:12]}\n" in log
    words = job_log(project, outcome.run_id, f"words[word={HOSTILE_WORD}]")
    assert f"word={HOSTILE_WORD}\n" in words


def test_the_value_joins_the_cache_key_through_the_env() -> None:
    loaded = parse_pipeline(SPEC, "conveyor.yml", steps=STEP_PARAMS)
    plans = [
        build_plan(loaded.pipeline, loaded.step_params, _git(branch), name="p", steps=STEPS)
        for branch in ("main", HOSTILE_BRANCH)
    ]

    shows = [plan.by_id()["show"] for plan in plans]
    assert shows[0].params == shows[1].params  # the command text is the same ...
    assert shows[0].env["CONVEYOR_GIT_BRANCH"] == "main"  # ... the env (in the key) is not
    assert shows[1].env["CONVEYOR_GIT_BRANCH"] == HOSTILE_BRANCH


def test_a_test_steps_bash_script_gets_variables_too() -> None:
    spec = """\
version: 1
jobs:
  tests:
    uses: test
    with:
      junit: report.xml
      command: ['./run-tests --branch "${{ git.branch }}" > report.xml']
  pytest:
    uses: test
    with:
      command: [pytest, "--branch=${{ git.branch }}"]
"""
    loaded = parse_pipeline(spec, "conveyor.yml", steps=STEP_PARAMS)

    plan = build_plan(
        loaded.pipeline, loaded.step_params, _git(HOSTILE_BRANCH), name="p", steps=STEPS
    )

    script, argv = plan.by_id()["tests"], plan.by_id()["pytest"]
    assert isinstance(script.params, TestParams) and isinstance(argv.params, TestParams)
    assert script.params.command == ['./run-tests --branch "${CONVEYOR_GIT_BRANCH}" > report.xml']
    assert script.env["CONVEYOR_GIT_BRANCH"] == HOSTILE_BRANCH
    # Without `junit:` the command is an argument list run without a shell: the text itself.
    assert argv.params.command == ["pytest", f"--branch={HOSTILE_BRANCH}"]


def _git(branch: str) -> GitContext:
    return GitContext(
        root=Path("/nonexistent"),
        sha="c0ffee" * 6 + "c0ff",
        branch=branch,
        tag=None,
        author_name="Ada",
        author_email="ada@example.org",
        message="a commit",
        committed_at=datetime(2024, 5, 1, tzinfo=UTC),
        dirty=False,
        changed_files=None,
    )
