"""Requirements out: filed on the forge's issues API (against a local fake that checks the
documented request of GitHub, GitLab and Gitea), or as a Markdown file when no forge is
configured; recorded once per source; linked back by a later commit that references it."""

from __future__ import annotations

import shutil
import time

import pytest

from conftest import GIT_ENV, GitProject, MakeProject
from conveyor.errors import ConveyorError, InfrastructureError
from conveyor.observe.requirements import (
    RequirementState,
    commit_requirement_file,
    file_requirement,
    link_commits,
    list_requirements,
)
from observe.fake_issues import TOKEN, fake_issues

SPEC = "version: 1\njobs:\n  noop: {run: 'true'}\n"
API_ROOT = {"github": "", "gitlab": "/api/v4", "gitea": "/api/v1"}


def forge_spec(kind: str, url: str) -> str:
    return (
        SPEC
        + f"forge:\n  kind: {kind}\n  repository: acme/shop\n"
        + "  clone_url: https://forge.example/acme/shop.git\n"
        + f"  api_url: {url}{API_ROOT[kind]}\n"
    )


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)


def file_one(repo: GitProject, source: str = "insight:flaky-test-1", title: str = "Fix it") -> str:
    with repo.store() as store:
        filed = file_requirement(
            repo.project(),
            store,
            title=title,
            body="The test failed, then passed.",
            labels=("conveyor", "flaky-test"),
            source=source,
            actor="ada",
        )
    return filed.key


@pytest.mark.parametrize("kind", ["github", "gitlab", "gitea"])
def test_a_requirement_is_filed_on_each_forge_as_documented(
    kind: str, git_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_FORGE_TOKEN", TOKEN)
    with fake_issues(kind) as forge:
        repo = git_project(forge_spec(kind, forge.url))
        first = file_one(repo)
        again = file_one(repo)  # the same source: the one already filed, no new issue

    assert [(s.answer, s.problem) for s in forge.seen] == [(201, None)]
    body = forge.seen[0].body
    assert body["title"] == "Fix it"
    if kind == "github":
        assert forge.seen[0].path == "/repos/acme/shop/issues"
        assert body["labels"] == ["conveyor", "flaky-test"]
        assert body["body"] == "The test failed, then passed."
    elif kind == "gitlab":
        assert forge.seen[0].path == "/api/v4/projects/acme%2Fshop/issues"
        assert body["labels"] == "conveyor,flaky-test"
        assert body["description"] == "The test failed, then passed."
    else:
        assert "Labels: conveyor, flaky-test" in body["body"]
    assert first == again == "#42"
    with repo.store() as store:
        [recorded] = list_requirements(store)
    assert (recorded.key, recorded.filed_on) == ("#42", kind)
    assert recorded.source == "insight:flaky-test-1"
    assert recorded.location.endswith("/42")
    assert recorded.state is RequirementState.FILED


def test_without_a_token_nothing_is_sent(git_project: MakeProject) -> None:
    with fake_issues("github") as forge:
        repo = git_project(forge_spec("github", forge.url))
        with pytest.raises(ConveyorError, match="no token to open an issue on github"):
            file_one(repo)
    assert forge.seen == []


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [(401, ConveyorError, "refused the token"), (500, InfrastructureError, "HTTP 500")],
)
def test_a_forge_that_says_no_records_nothing(
    status: int,
    error: type[ConveyorError],
    message: str,
    git_project: MakeProject,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_FORGE_TOKEN", TOKEN)
    with fake_issues("github", answer_with=status) as forge:
        repo = git_project(forge_spec("github", forge.url))
        with pytest.raises(error, match=message):
            file_one(repo)
    with repo.store() as store:
        assert list_requirements(store) == []


def test_an_unreachable_forge_is_an_infrastructure_error(
    git_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_FORGE_TOKEN", TOKEN)
    with fake_issues("github") as forge:
        url = forge.url
    repo = git_project(forge_spec("github", url))  # nothing listens there any more
    with pytest.raises(InfrastructureError, match="did not answer"):
        file_one(repo)


def test_without_a_forge_a_markdown_file_is_written_and_can_be_committed(
    git_project: MakeProject,
) -> None:
    repo = git_project(SPEC)
    repo.write({"staged.txt": "someone's work in progress"})
    repo.git("add", "staged.txt")

    first = file_one(repo, "insight:a", "Speed up the build")
    second = file_one(repo, "insight:b", "Renew a waiver")
    path = repo.root / "docs/requirements/REQ-1.md"
    text = path.read_text()
    with repo.store() as store:
        filed = [r.filed() for r in list_requirements(store)]
        sha = commit_requirement_file(repo.project(), filed[0])

    assert (first, second) == ("REQ-1", "REQ-2")
    assert text.startswith("# REQ-1: Speed up the build\n")
    assert "- Source: insight:a" in text and "`Refs REQ-1`" in text
    assert filed[0].location == "docs/requirements/REQ-1.md"
    assert repo.git("show", "--name-only", "--format=%s", sha).splitlines() == [
        "docs: file REQ-1: Speed up the build",
        "",
        "docs/requirements/REQ-1.md",
    ]
    status = repo.git("status", "--porcelain").splitlines()
    assert "A  staged.txt" in status  # still staged, not swept into the commit
    assert "?? docs/requirements/REQ-2.md" in status


def test_a_number_taken_by_a_file_is_skipped(git_project: MakeProject) -> None:
    repo = git_project(SPEC, files={"docs/requirements/REQ-5.md": "# REQ-5: by hand\n"})
    assert file_one(repo) == "REQ-6"


def test_a_later_commit_that_references_the_key_links_back(git_project: MakeProject) -> None:
    repo = git_project(SPEC)
    key = file_one(repo)
    other = file_one(repo, "insight:other")
    repo.commit(message="chore: unrelated")
    sha = repo.commit(message=f"fix: retry the flaky test\n\nRefs {key}")
    repo.commit(message=f"fix: again\n\nCloses {key}")  # later: the first one addressed it

    with repo.store() as store:
        linked = link_commits(repo.project(), store)
        again = link_commits(repo.project(), store)
        requirements = {r.key: r for r in list_requirements(store)}

    assert [(link.key, link.sha, link.closed) for link in linked] == [(key, sha, False)]
    assert again == []
    assert requirements[key].state is RequirementState.ADDRESSED
    assert requirements[key].addressed_by == sha
    assert requirements[other].state is RequirementState.FILED


def test_a_commit_older_than_the_requirement_does_not_address_it(
    git_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = git_project(SPEC)
    key = file_one(repo)
    old = time.time() - 86_400
    monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{int(old)} +0000")
    repo.commit(message=f"fix: long ago\n\nRefs {key}")
    with repo.store() as store:
        assert link_commits(repo.project(), store) == []


def test_a_forge_key_is_linked_by_its_full_name_and_a_closing_keyword(
    git_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_FORGE_TOKEN", TOKEN)
    with fake_issues("github") as forge:
        repo = git_project(forge_spec("github", forge.url))
        key = file_one(repo)
    sha = repo.commit(message="fix: the flake\n\nFixes acme/shop#42")
    with repo.store() as store:
        [linked] = link_commits(repo.project(), store)
    assert (key, linked.key, linked.sha, linked.closed) == ("#42", "#42", sha, True)


def test_a_folder_that_is_not_a_repository_links_nothing(git_project: MakeProject) -> None:
    repo = git_project(SPEC)
    file_one(repo)
    shutil.rmtree(repo.root / ".git")
    with repo.store() as store:
        assert link_commits(repo.project(), store) == []


@pytest.mark.parametrize(("title", "source"), [("  ", "insight:x"), ("A title", " ")])
def test_a_requirement_needs_a_title_and_a_source(
    title: str, source: str, git_project: MakeProject
) -> None:
    repo = git_project(SPEC)
    with repo.store() as store, pytest.raises(ConveyorError, match="needs a"):
        file_requirement(repo.project(), store, title=title, body="", source=source, actor="a")


def test_hostile_titles_and_bodies_are_bounded(git_project: MakeProject) -> None:
    repo = git_project(SPEC)
    with repo.store() as store:
        filed = file_requirement(
            repo.project(),
            store,
            title="x\n" * 5_000,
            body="y" * 1_000_000,
            labels=["a"] * 100,
            source="insight:huge",
            actor="a",
        )
    assert len(filed.title) <= 256 and "\n" not in filed.title
    assert (repo.root / filed.location).stat().st_size < 70_000
