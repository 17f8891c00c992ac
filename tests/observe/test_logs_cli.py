"""`conveyor logs --env`: its arguments and exit codes, beside the run/job form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import GitProject, MakeProject, run_cli
from conveyor.deploy.runtimes.logs import LogLimits, RotatingLog, stamp
from conveyor.service.project import Project

SPEC = """\
version: 1
jobs:
  build: {run: echo built}
environments:
  staging:
    secrets: [API_TOKEN]
"""
TOKEN = "tok_Lk3Jh5Gf7Ds9"
RELEASE = "staging-app-0123456789ab"


def written(project: Project, release: str, *lines: str, at: float = 1_796_000_000.0) -> None:
    """Lines as the process runtime keeps a replica's output, and the release recorded."""
    folder = project.state_dir / "runtime" / "releases" / release
    folder.mkdir(parents=True, exist_ok=True)
    log = RotatingLog(folder / "replica-0.log", LogLimits())
    log.write(b"".join(stamp(at) + line.encode() + b"\n" for line in lines))
    log.close()
    with project.open_store() as store:
        store.ledger.releases.register("staging", release, "app", "sha256:" + "0" * 64, [8080])


@pytest.fixture
def repo(git_project: MakeProject, monkeypatch: pytest.MonkeyPatch) -> GitProject:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    made = git_project(SPEC)
    project = made.project()
    project.ensure_state_dir()
    written(
        project,
        RELEASE,
        f"starting with token {TOKEN}",
        json.dumps({"level": "error", "message": "checkout failed", "order": 7}),
    )
    return made


def test_json_output_is_the_page_of_lines_newest_first_masked(repo: GitProject) -> None:
    result = run_cli(["logs", "--env", "staging", "-o", "json"], repo.root)
    assert result.exit_code == 0, result.stderr
    page = result.json()
    assert page["next_cursor"] is None
    assert [item["message"] for item in page["items"]] == [
        "checkout failed",
        "starting with token ***",
    ]
    assert page["items"][0] == {
        "release": RELEASE,
        "replica": 0,
        "received": 1_796_000_000.0,
        "time": 1_796_000_000.0,
        "level": "error",
        "message": "checkout failed",
        "logger": None,
        "fields": {"order": 7},
    }
    assert TOKEN not in result.stdout


def test_text_output_is_oldest_first_one_line_each(repo: GitProject) -> None:
    result = run_cli(["logs", "--env", "staging", "--release", "staging-app"], repo.root)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"2026-11-30T00:53:20.000Z {RELEASE}/0 starting with token ***",
        f"2026-11-30T00:53:20.000Z {RELEASE}/0 ERROR checkout failed order=7",
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--since", "yesterday"], 2, "--since 'yesterday' is neither a duration nor a time"),
        (["--level", "loud"], 2, "unknown level 'loud'"),
        (["--release", "prod-"], 4, "no release 'prod-' in staging"),
    ],
)
def test_bad_filters_exit_non_zero_with_the_reason(
    repo: GitProject, args: list[str], code: int, message: str
) -> None:
    result = run_cli(["logs", "--env", "staging", *args], repo.root)
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_environment_is_not_found(repo: GitProject) -> None:
    result = run_cli(["logs", "--env", "nowhere"], repo.root)
    assert result.exit_code == 4
    assert "no environment 'nowhere'" in result.stderr


def test_a_run_and_an_environment_together_are_refused(repo: GitProject) -> None:
    result = run_cli(["logs", "3", "build", "--env", "staging"], repo.root)
    assert result.exit_code == 2
    assert "not both" in result.stderr


def test_environment_filters_without_env_are_refused(repo: GitProject) -> None:
    result = run_cli(["logs", "--grep", "boom", "--level", "error"], repo.root)
    assert result.exit_code == 2
    assert "--grep, --level filter an environment's logs: they need --env" in result.stderr


def test_the_run_form_still_works(repo: GitProject) -> None:
    assert run_cli(["run"], repo.root).exit_code == 0
    result = run_cli(["logs", "build"], repo.root)
    assert result.exit_code == 0, result.stderr
    assert "built" in result.stdout


def test_an_environment_never_deployed_has_no_lines(git_project: MakeProject) -> None:
    repo = git_project(SPEC.replace("secrets: [API_TOKEN]", "replicas: 1"))
    project = repo.project()
    project.ensure_state_dir()
    with project.open_store():
        pass  # the state exists, nothing deployed
    result = run_cli(["logs", "--env", "staging", "-o", "json"], repo.root)
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"items": [], "next_cursor": None}


def test_minus_f_still_names_the_spec_file(repo: GitProject, tmp_path: Path) -> None:
    spec = str(repo.root / "conveyor.yml")
    result = run_cli(["logs", "-f", spec, "--env", "staging", "-n", "1", "-o", "json"], tmp_path)
    assert result.exit_code == 0, result.stderr
    assert [item["message"] for item in result.json()["items"]] == ["checkout failed"]
