"""Release notes on a real git history: each production release lists the commits since
the release it replaced, grouped by type with their linked ids, in the release record,
in `conveyor release notes` and in the API's shape.

Production runs on the in-memory runtime and router of tests/deploy/fakes.py behind the
real service, controller and store (as tests/service/test_release_record_by_deploy.py).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_cli
from conveyor.errors import NotFoundError
from conveyor.observe.release_notes import release_notes, to_markdown
from conveyor.service import environments as envs
from conveyor.service.project import Project
from conveyor.service.release_record import release_record
from conveyor.service.release_record import to_markdown as record_markdown
from conveyor.store.records import NewRun
from conveyor.store.store import Store
from deploy.apps import build_app, project_with_spec
from deploy.fake_plane import use_fake_plane

SPEC = """\
version: 1
jobs:
  noop: {run: 'true'}
forge:
  kind: github
  repository: acme/shop
  clone_url: https://github.com/acme/shop.git
environments:
  production:
    replicas: 1
    drain: 10ms
    health:
      readiness: {path: /healthz, interval: 100ms}
"""


@dataclass(frozen=True)
class Production:
    project: Project
    store: Store

    def commit(self, message: str) -> str:
        git = ["git", "-C", str(self.project.directory), "-c", "user.name=Ada"]
        git += ["-c", "user.email=ada@example.org"]
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", message], check=True)
        done = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True)
        return done.stdout.decode().strip()

    def release(self, image: str, commit: str) -> str:
        """A run at `commit` that built `image`, and its deploy to production."""
        meta = NewRun(pipeline="shop", commit_sha=commit, branch="main", author="Ada", actor="t")
        run_id = self.store.create_run(meta, [])
        repository, digest = image.split("@")
        summary = {"repository": repository, "digest": digest, "tags": []}
        self.store.add_report(run_id, "image", "image", self.store.blobs.put_report(b"{}"), summary)
        outcome = envs.deploy(
            self.project, self.store, "production", image, actor="t", run_id=run_id
        )
        assert outcome.state.value == "succeeded", outcome.reason
        return outcome.release_id


@pytest.fixture
def production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Production]:
    project = project_with_spec(tmp_path / "project", SPEC)
    subprocess.run(["git", "init", "-q", "-b", "main", str(project.directory)], check=True)
    use_fake_plane(monkeypatch)
    with project.open_store() as store:
        yield Production(project, store)


def test_notes_group_the_commits_since_the_previous_release(
    production: Production, tmp_path: Path
) -> None:
    first = production.commit("chore: start")
    v1 = production.release(build_app(production.project, tmp_path, "v1"), first)
    feature = production.commit("feat(cart)!: one-page checkout\n\nCloses #12\nRefs PROJ-45")
    fix = production.commit("fix: rounding of totals\n\nFixes acme/shop#13")
    docs = production.commit("Update the README")
    merge = production.commit("Merge pull request #14 from acme/topic")
    v2 = production.release(build_app(production.project, tmp_path, "v2"), merge)

    notes = release_notes(production.project, production.store, "production")

    assert (notes.release_id, notes.previous_release, notes.since) == (v2, v1, first)
    assert [(e["sha"], e["subject"], e["scope"]) for e in notes.features] == [
        (feature, "one-page checkout", "cart")
    ]
    assert notes.features[0]["closes"] == ["#12"] and notes.features[0]["refs"] == ["PROJ-45"]
    assert [(e["sha"], e["closes"]) for e in notes.fixes] == [(fix, ["#13"])]  # its own repo
    assert [e["sha"] for e in notes.others] == [docs]  # the merge commit is left out
    assert [e["sha"] for e in notes.breaking] == [feature]
    assert notes.linked == ["#13", "#12", "PROJ-45"]  # newest commit first
    markdown = to_markdown(notes)
    assert markdown.startswith(f"## {v2} to production since {v1}\n")
    assert "### Breaking changes" in markdown
    assert f"- **cart**: one-page checkout `{feature[:12]}` (closes #12, refs PROJ-45)" in markdown
    assert f"- rounding of totals `{fix[:12]}` (closes #13)" in markdown
    assert "Linked: #13, #12, PROJ-45" in markdown


def test_the_release_record_carries_the_notes(production: Production, tmp_path: Path) -> None:
    first = production.commit("chore: start")
    production.release(build_app(production.project, tmp_path, "v1"), first)
    fix = production.commit("fix: a crash\n\nFixes #7")
    production.release(build_app(production.project, tmp_path, "v2"), fix)

    record = release_record(production.project, production.store, "production")

    assert record["record_version"] >= 3  # notes came with 3
    assert record["notes"]["since"] == first
    assert [e["sha"] for e in record["notes"]["fixes"]] == [fix]
    assert record["notes"]["linked"] == ["#7"]
    assert [c["sha"] for c in record["commits"]] == [fix]
    assert "## Release notes" in record_markdown(record)


def test_an_earlier_release_is_named_and_an_unknown_one_is_not_found(
    production: Production, tmp_path: Path
) -> None:
    first = production.commit("feat: first feature\n\nRefs REQ-1")
    v1 = production.release(build_app(production.project, tmp_path, "v1"), first)
    second = production.commit("fix: second")
    production.release(build_app(production.project, tmp_path, "v2"), second)

    earlier = release_notes(production.project, production.store, "production", v1)

    assert earlier.previous_release is None and earlier.since is None
    assert [e["sha"] for e in earlier.features] == [first]  # its own commit alone
    with pytest.raises(NotFoundError, match="production has no release production-nope"):
        release_notes(production.project, production.store, "production", "production-nope")


def test_the_cli_prints_the_notes_as_markdown_or_json(
    production: Production, tmp_path: Path
) -> None:
    first = production.commit("chore: start")
    production.release(build_app(production.project, tmp_path, "v1"), first)
    feature = production.commit("feat: search\n\nCloses #3")
    v2 = production.release(build_app(production.project, tmp_path, "v2"), feature)

    text = run_cli(["release", "notes", "production"], production.project.directory)
    as_json = run_cli(["release", "notes", "production", v2, "-o", "json"], tmp_path / "project")
    unknown = run_cli(["release", "notes", "staging"], production.project.directory)

    assert text.exit_code == 0, text.stderr
    assert f"- search `{feature[:12]}` (closes #3)" in text.stdout
    assert as_json.exit_code == 0, as_json.stderr
    assert as_json.json()["features"][0]["closes"] == ["#3"]
    assert as_json.json()["release_id"] == v2
    assert unknown.exit_code == 4
