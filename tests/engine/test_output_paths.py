"""Outputs stay inside the workspace: when collected, and when restored from the cache."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import GitProject, MakeProject, run_cli
from conveyor.engine.workspace import (
    UnsafeOutputError,
    UnsafeRestoreError,
    collect_outputs,
    restore_outputs,
)
from conveyor.states import JobState, RunState
from conveyor.store.blobs import BlobStore

SECRET = "DEPLOY_TOKEN=s3cret-value\n"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, BlobStore]:
    """A project's state folder with secrets.env, and a run's workspace inside it."""
    state = tmp_path / "project" / ".conveyor"
    workspace = state / "runs" / "1" / "workspace"
    workspace.mkdir(parents=True)
    (state / "secrets.env").write_text(SECRET)
    return state, workspace, BlobStore(state / "blobs")


def stored_texts(blobs: BlobStore) -> list[bytes]:
    return [p.read_bytes() for p in blobs.root.rglob("*") if p.is_file()]


def assert_secret_not_stored(blobs: BlobStore) -> None:
    assert all(SECRET.encode() not in data for data in stored_texts(blobs))


# --- collecting --------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern", ["{..,x}/{..,x}/{..,x}/secrets.env", "{/etc/hostname,x}", ".conveyor/secrets.env"]
)
def test_an_unlinted_glob_that_leaves_the_workspace_is_refused_at_run_time(
    layout: tuple[Path, Path, BlobStore], pattern: str
) -> None:
    _, workspace, blobs = layout

    with pytest.raises(UnsafeOutputError, match="outputs: glob"):
        collect_outputs(workspace, [pattern], blobs)

    assert_secret_not_stored(blobs)


def test_a_matched_file_behind_a_symlink_out_of_the_workspace_is_refused(
    layout: tuple[Path, Path, BlobStore],
) -> None:
    state, workspace, blobs = layout
    (workspace / "dist").mkdir()
    (workspace / "dist" / "app.txt").write_text("app\n")
    (workspace / "dist" / "leak.env").symlink_to(state / "secrets.env")

    with pytest.raises(UnsafeOutputError, match=r"'dist/leak\.env' leads outside the workspace"):
        collect_outputs(workspace, ["dist/**"], blobs)

    assert_secret_not_stored(blobs)


def test_a_symlinked_folder_leading_out_is_refused(layout: tuple[Path, Path, BlobStore]) -> None:
    state, workspace, blobs = layout
    (workspace / "out").symlink_to(state)

    with pytest.raises(UnsafeOutputError, match="leads outside the workspace"):
        collect_outputs(workspace, ["out/secrets.env"], blobs)

    assert_secret_not_stored(blobs)


def test_wildcards_leave_out_a_state_folder_inside_the_workspace(
    layout: tuple[Path, Path, BlobStore],
) -> None:
    _, workspace, blobs = layout
    (workspace / ".conveyor").mkdir()
    (workspace / ".conveyor" / "secrets.env").write_text(SECRET)
    (workspace / "report.txt").write_text("ok\n")

    digest = collect_outputs(workspace, ["**"], blobs)

    assert digest is not None
    assert list(json.loads(blobs.get_bytes(digest))) == ["report.txt"]
    assert_secret_not_stored(blobs)


# --- restoring ---------------------------------------------------------------------


def crafted_manifest(blobs: BlobStore, paths: list[str]) -> str:
    digest = blobs.put_bytes(b"PWNED\n")
    manifest = {path: {"digest": digest, "executable": False} for path in paths}
    return blobs.put_bytes(json.dumps(manifest).encode())


@pytest.mark.parametrize("bad", ["../../../secrets.env", "ABSOLUTE", "a/./b", "a//b"])
def test_a_crafted_manifest_is_refused_and_nothing_is_written(
    layout: tuple[Path, Path, BlobStore], tmp_path: Path, bad: str
) -> None:
    state, workspace, blobs = layout
    victim = tmp_path / "victim.txt"
    path = str(victim) if bad == "ABSOLUTE" else bad
    manifest = crafted_manifest(blobs, ["fine.txt", path])

    with pytest.raises(UnsafeRestoreError, match="is not a path inside the workspace"):
        restore_outputs(manifest, workspace, blobs)

    assert (state / "secrets.env").read_text() == SECRET
    assert not victim.exists()
    assert not (workspace / "fine.txt").exists()  # checked before anything was written


def test_restoring_through_a_symlink_that_leads_out_is_refused(
    layout: tuple[Path, Path, BlobStore], tmp_path: Path
) -> None:
    _, workspace, blobs = layout
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "dist").symlink_to(outside)
    manifest = crafted_manifest(blobs, ["dist/app.txt"])

    with pytest.raises(UnsafeRestoreError, match="not a folder inside the workspace"):
        restore_outputs(manifest, workspace, blobs)

    assert list(outside.iterdir()) == []


def test_restoring_replaces_a_symlinked_file_instead_of_writing_through_it(
    layout: tuple[Path, Path, BlobStore],
) -> None:
    state, workspace, blobs = layout
    (workspace / "app.txt").symlink_to(state / "secrets.env")
    manifest = crafted_manifest(blobs, ["app.txt"])

    assert restore_outputs(manifest, workspace, blobs) == 1

    assert (state / "secrets.env").read_text() == SECRET
    assert not (workspace / "app.txt").is_symlink()
    assert (workspace / "app.txt").read_text() == "PWNED\n"


def test_a_symlink_that_stays_inside_the_workspace_is_followed(
    layout: tuple[Path, Path, BlobStore],
) -> None:
    _, workspace, blobs = layout
    (workspace / "build").mkdir()
    (workspace / "dist").symlink_to("build")
    manifest = crafted_manifest(blobs, ["dist/app.txt"])

    assert restore_outputs(manifest, workspace, blobs) == 1
    assert (workspace / "build" / "app.txt").read_text() == "PWNED\n"


# --- through whole runs ------------------------------------------------------------

SPEC = """\
version: 1
jobs:
  build:
    inputs: [app.py]
    outputs: ["dist/**"]
    run:
      - mkdir -p dist
      - cp app.py dist/app.py
"""


def test_a_job_whose_outputs_link_out_of_the_workspace_fails(git_project: MakeProject) -> None:
    project = git_project(
        SPEC.replace("cp app.py dist/app.py", 'ln -s "$CONVEYOR_STATE_DIR/conveyor.db" dist/db'),
        {"app.py": "print(1)\n"},
    )

    outcome = project.run()

    assert outcome.state is RunState.FAILED
    build = project.jobs(outcome.run_id)["build"]
    assert build.state is JobState.FAILED
    assert "'dist/db' leads outside the workspace" in (build.detail or "")


def test_a_crafted_cache_entry_is_refused_on_the_next_run(
    git_project: MakeProject, tmp_path: Path
) -> None:
    project: GitProject = git_project(SPEC, {"app.py": "print(1)\n"})
    assert project.run().state is RunState.SUCCESS
    secrets = project.project().state_dir / "secrets.env"
    secrets.write_text(SECRET)
    victim = tmp_path / "victim.txt"
    key = project.jobs(1)["build"].cache_key
    with project.store() as store:
        entry = store.cache_get(key or "")
        assert entry is not None
        crafted = crafted_manifest(store.blobs, ["dist/app.py", str(victim)])
        store.cache_put(dataclasses.replace(entry, outputs_manifest=crafted))
        crafted_dots = crafted_manifest(store.blobs, ["../../../secrets.env"])

    second = project.run()

    assert second.state is RunState.FAILED
    detail = project.jobs(second.run_id)["build"].detail or ""
    assert f"refusing to restore cached outputs: '{victim}'" in detail
    assert "--no-cache" in detail
    assert not victim.exists()
    with project.store() as store:
        store.cache_put(dataclasses.replace(entry, outputs_manifest=crafted_dots))

    result = run_cli(["run", "-q"], project.root)

    assert result.exit_code == 1
    detail = project.jobs(3)["build"].detail or ""
    assert "refusing to restore cached outputs: '../../../secrets.env'" in detail
    assert secrets.read_text() == SECRET
