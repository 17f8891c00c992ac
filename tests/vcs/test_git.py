import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from conveyor.errors import ConveyorError
from conveyor.vcs.git import list_source_files, read_git_context, repo_root


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the user's git configuration out and make commits deterministic enough."""
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Ada Lovelace")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "ada@example.org")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Ada Lovelace")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "ada@example.org")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2024-05-01T12:30:00+02:00")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def commit(repo: Path, message: str, **files: str) -> str:
    for name, content in files.items():
        path = repo / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    return root


def test_context_of_a_clean_commit_on_a_branch(repo: Path) -> None:
    commit(repo, "first", a="1")
    sha = commit(repo, "Add b\n\nWith a body.", b="2")

    context = read_git_context(repo)

    assert context.root == repo
    assert context.sha == sha
    assert context.branch == "main"
    assert context.tag is None
    assert context.author_name == "Ada Lovelace"
    assert context.author_email == "ada@example.org"
    assert context.message == "Add b\n\nWith a body."
    assert context.committed_at.utcoffset() == timedelta(hours=2)
    assert context.committed_at.isoformat() == "2024-05-01T12:30:00+02:00"
    assert context.dirty is False
    assert context.changed_files == ("b",)


def test_tag_on_head_picks_the_highest_version(repo: Path) -> None:
    commit(repo, "first", a="1")
    git(repo, "tag", "v1.2.0")
    git(repo, "tag", "-a", "v1.10.0", "-m", "release")
    assert read_git_context(repo).tag == "v1.10.0"


def test_detached_head_has_no_branch(repo: Path) -> None:
    first = commit(repo, "first", a="1")
    commit(repo, "second", a="2")
    git(repo, "checkout", "-q", "--detach", first)
    context = read_git_context(repo)
    assert context.branch is None
    assert context.sha == first


def test_dirty_tree_adds_uncommitted_and_untracked_files(repo: Path) -> None:
    commit(repo, "first", a="1", keep="k", old="o")
    commit(repo, "second", b="2")
    (repo / "a").write_text("changed")
    (repo / "newdir").mkdir()
    (repo / "newdir" / "n.txt").write_text("n")
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "ignored.log").write_text("x")
    git(repo, "mv", "old", "renamed")

    context = read_git_context(repo)

    assert context.dirty is True
    assert context.changed_files == (".gitignore", "a", "b", "newdir/n.txt", "old", "renamed")


def test_untracked_file_alone_makes_the_tree_dirty(repo: Path) -> None:
    commit(repo, "first", a="1")
    (repo / "scratch.txt").write_text("x")
    context = read_git_context(repo)
    assert context.dirty is True
    assert context.changed_files == ("a", "scratch.txt")


def test_changed_files_since_an_ancestor(repo: Path) -> None:
    base = commit(repo, "base", a="1", b="1")
    commit(repo, "two", src__x="1")
    commit(repo, "three", b="2")
    assert read_git_context(repo, since=base).changed_files == ("b", "src/x")


def test_since_head_means_nothing_changed(repo: Path) -> None:
    head = commit(repo, "base", a="1")
    assert read_git_context(repo, since=head).changed_files == ()


@pytest.mark.parametrize("since", ["other-branch-tip", "0" * 40, "not-a-revision"])
def test_non_ancestor_since_falls_back_to_head_against_its_parent(repo: Path, since: str) -> None:
    commit(repo, "base", a="1")
    git(repo, "checkout", "-q", "-b", "other")
    other = commit(repo, "elsewhere", z="1")
    git(repo, "checkout", "-q", "main")
    commit(repo, "head", c="1", a="2")
    since = other if since == "other-branch-tip" else since

    assert read_git_context(repo, since=since).changed_files == ("a", "c")


def test_root_commit_changes_every_file(repo: Path) -> None:
    commit(repo, "root", a="1", d__e="2")
    assert read_git_context(repo).changed_files == ("a", "d/e")


def test_repository_without_commits_is_a_user_error(repo: Path) -> None:
    with pytest.raises(ConveyorError) as caught:
        read_git_context(repo)
    assert "no commits" in caught.value.message
    assert "git commit" in (caught.value.hint or "")


def test_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    for call in (lambda: repo_root(plain), lambda: read_git_context(plain)):
        with pytest.raises(ConveyorError) as caught:
            call()
        assert "not a git repository" in caught.value.message
        assert "git init" in (caught.value.hint or "")


def test_repo_root_from_a_subdirectory(repo: Path) -> None:
    (repo / "sub" / "deeper").mkdir(parents=True)
    assert repo_root(repo / "sub" / "deeper") == repo.resolve()


def test_source_files_are_tracked_plus_untracked_minus_ignored(repo: Path) -> None:
    commit(repo, "first", a="1", gone="x", src__m="1", **{".gitignore": "build/\n*.tmp\n"})
    (repo / "gone").unlink()
    (repo / "src" / "new file.py").write_text("n")
    (repo / "build").mkdir()
    (repo / "build" / "out.bin").write_text("b")
    (repo / "x.tmp").write_text("t")

    assert list_source_files(repo) == [".gitignore", "a", "src/m", "src/new file.py"]


def test_source_files_of_a_subdirectory_are_relative_to_it(repo: Path) -> None:
    commit(repo, "first", top="1", app__src__m="1")
    (repo / "app" / "new").write_text("n")
    assert list_source_files(repo / "app") == ["new", "src/m"]
