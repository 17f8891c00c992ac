"""The job cache through whole runs: hits restore outputs, misses say what changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import GitProject, MakeProject
from conveyor.errors import ConveyorError
from conveyor.states import JobState, RunState

SPEC = """\
version: 1
env:
  MODE: fast
jobs:
  build:
    inputs: [app.py]
    outputs: ["dist/**"]
    run:
      - mkdir -p dist
      - cp app.py dist/app.py
  test:
    needs: [build]
    inputs: ["tests/**"]
    run: cat dist/app.py tests/*.txt
  docs:
    inputs: ["docs/**"]
    run: cat docs/index.md
"""
FILES = {
    "app.py": "print('v1')\n",
    "tests/test_app.txt": "checks\n",
    "docs/index.md": "# docs\n",
    "README.md": "hello\n",
}


@pytest.fixture
def project(git_project: MakeProject) -> GitProject:
    project = git_project(SPEC, FILES)
    assert project.run().state is RunState.SUCCESS
    return project


def states_and_details(project: GitProject, run_id: int) -> dict[str, tuple[JobState, str]]:
    return {job_id: (job.state, job.detail or "") for job_id, job in project.jobs(run_id).items()}


def miss_reasons(project: GitProject, run_id: int) -> dict[str, str]:
    """Why each job ran: the detail of its first `running` event (the final one says 'took')."""
    with project.store() as store:
        events = store.events(run_id=run_id)
    reasons: dict[str, str] = {}
    for event in events:
        if event.job_id is not None and event.state == JobState.RUNNING:
            reasons.setdefault(event.job_id, str(event.data.get("detail")))
    return reasons


def test_the_same_commit_again_is_all_cached_with_outputs_restored(project: GitProject) -> None:
    outcome = project.run()

    assert outcome.state is RunState.SUCCESS
    assert set(outcome.jobs.values()) == {JobState.CACHED}
    details = states_and_details(project, outcome.run_id)
    assert all(
        detail.startswith("cache hit: outputs of run 1 restored") for _, detail in details.values()
    )
    restored = project.workspace(outcome.run_id) / "dist" / "app.py"
    assert restored.read_text() == "print('v1')\n"


def test_a_changed_input_misses_only_the_jobs_that_declare_it(project: GitProject) -> None:
    project.commit({"app.py": "print('v2')\n"})

    outcome = project.run()

    assert outcome.jobs == {
        "build": JobState.SUCCESS,
        "test": JobState.SUCCESS,
        "docs": JobState.CACHED,
    }
    # The build's output changed, so the test that uses it runs again too.
    assert miss_reasons(project, outcome.run_id) == {
        "build": "cache miss: inputs changed: app.py modified (compared with run 1)",
        "test": "cache miss: upstream outputs of 'build' changed (compared with run 1)",
    }


def test_added_and_unrelated_files(project: GitProject) -> None:
    project.commit({"tests/test_more.txt": "more\n", "README.md": "hello again\n"})

    outcome = project.run()

    jobs = project.jobs(outcome.run_id)
    assert {job_id: job.state for job_id, job in jobs.items()} == {
        "build": JobState.CACHED,
        "test": JobState.SUCCESS,
        "docs": JobState.CACHED,
    }
    assert miss_reasons(project, outcome.run_id) == {
        "test": "cache miss: inputs changed: tests/test_more.txt added (compared with run 1)"
    }


def test_a_changed_env_value_names_the_variable(project: GitProject) -> None:
    project.commit({"conveyor.yml": SPEC.replace("MODE: fast", "MODE: slow")})

    outcome = project.run()

    assert set(outcome.jobs.values()) == {JobState.SUCCESS}
    assert miss_reasons(project, outcome.run_id) == dict.fromkeys(
        ("build", "test", "docs"),
        "cache miss: env 'MODE' changed ('fast' -> 'slow') (compared with run 1)",
    )


def test_a_miss_is_explained_against_the_same_branchs_last_entry(project: GitProject) -> None:
    project.git("checkout", "-q", "-b", "feature")
    project.commit({"docs/index.md": "# feature docs\n", "docs/feature.md": "new\n"})
    on_feature = project.run()
    project.git("checkout", "-q", "main")
    project.commit({"docs/index.md": "# docs, edited on main\n"})

    on_main = project.run()

    # The feature branch's entry is newer, but main's own (run 1) says what main changed.
    assert miss_reasons(project, on_main.run_id) == {
        "docs": "cache miss: inputs changed: docs/index.md modified (compared with run 1)"
    }
    assert miss_reasons(project, on_feature.run_id) == {
        "docs": "cache miss: inputs changed: docs/index.md modified, docs/feature.md added "
        "(first run of this job on feature; compared with run 1 on main)"
    }


def test_cache_false_always_runs(git_project: MakeProject) -> None:
    spec = SPEC.replace('    inputs: ["docs/**"]\n', '    inputs: ["docs/**"]\n    cache: false\n')
    project = git_project(spec, FILES)
    project.run()

    outcome = project.run()

    assert outcome.jobs == {
        "build": JobState.CACHED,
        "test": JobState.CACHED,
        "docs": JobState.SUCCESS,
    }
    assert project.jobs(outcome.run_id)["docs"].cache_key is None
    assert miss_reasons(project, outcome.run_id) == {"docs": "cache disabled"}


def test_no_cache_runs_every_job(project: GitProject) -> None:
    outcome = project.run(use_cache=False)

    assert set(outcome.jobs.values()) == {JobState.SUCCESS}
    assert miss_reasons(project, outcome.run_id) == dict.fromkeys(
        ("build", "test", "docs"), "cache disabled (--no-cache)"
    )


RERUN_SPEC = """\
version: 1
jobs:
  prepare:
    outputs: [prep.txt]
    run: echo prepared > prep.txt
  flaky:
    needs: [prepare]
    cache: false
    run: test -f "$FIXED"
  after:
    needs: [flaky]
    run: cat prep.txt
  other:
    outputs: [other.txt]
    run: echo other > other.txt
"""


def test_rerun_failed_reruns_the_failed_job_and_its_dependants_only(
    git_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed = tmp_path / "fixed"
    monkeypatch.setenv("FIXED", str(fixed))
    project = git_project(RERUN_SPEC)
    first = project.run()
    assert first.jobs == {
        "prepare": JobState.SUCCESS,
        "flaky": JobState.FAILED,
        "after": JobState.BLOCKED,
        "other": JobState.SUCCESS,
    }
    fixed.touch()

    outcome = project.run(rerun_failed=first.run_id)

    assert outcome.state is RunState.SUCCESS
    jobs = project.jobs(outcome.run_id)
    summary = {job_id: (job.state, job.detail) for job_id, job in jobs.items()}
    assert summary["prepare"] == (JobState.CACHED, f"kept from run {first.run_id}")
    assert summary["other"] == (JobState.CACHED, f"kept from run {first.run_id}")
    assert summary["flaky"][0] is JobState.SUCCESS
    assert summary["after"][0] is JobState.SUCCESS
    workspace = project.workspace(outcome.run_id)
    assert (workspace / "prep.txt").read_text() == "prepared\n"
    assert (workspace / "other.txt").read_text() == "other\n"
    assert project.run_record(outcome.run_id).trigger == {
        "kind": "rerun-failed",
        "rerun_of": first.run_id,
    }


def test_rerun_failed_of_another_commit_is_a_user_error(project: GitProject) -> None:
    project.commit({"README.md": "changed\n"})

    with pytest.raises(ConveyorError, match="run 1 was for commit"):
        project.run(rerun_failed=1)
