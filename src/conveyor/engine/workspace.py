"""A run's workspace: a checkout of the commit, plus job outputs.

Every job of a run works in the same workspace, so the outputs of a job are where its
dependants expect them. Outputs are also stored as blobs so that a cache hit or a
`--rerun-failed` run can restore them into a fresh workspace.

Outputs stay inside the workspace both ways: their globs are checked after brace
expansion, a matched file must resolve inside the workspace (no symlink out), and a
restored path must be relative, without `..`, and written through no link that leads out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from wcmatch import glob as wcglob

from conveyor.errors import ConveyorError, ExitCode
from conveyor.spec.globs import GLOB_FLAGS, check_output_glob, filter_paths, under_state_dir
from conveyor.store.blobs import BlobStore
from conveyor.vcs.checkout import checkout, tree_digests
from conveyor.vcs.git import list_source_files


@dataclass(frozen=True)
class Workspace:
    path: Path  # where jobs run: the project folder inside the checkout
    source_digests: dict[str, str]  # project-relative path -> content id

    def input_manifest(self, patterns: list[str]) -> dict[str, str]:
        """The source files a job declared as inputs, with their content ids."""
        return {p: self.source_digests[p] for p in filter_paths(self.source_digests, patterns)}


def prepare_workspace(
    repository: Path, project_dir: Path, sha: str, destination: Path, *, uncommitted: bool
) -> Workspace:
    """Check the commit out into `destination`, a git repository of its own.

    A shared clone is cheap (objects are borrowed from the project's repository) and,
    being its own repository, stops tools that honour .gitignore (ruff, semgrep) from
    treating the workspace as ignored, and gives jobs the history they may need.
    File content ids are git's own blob ids, so clean files are never read to be hashed.
    With `uncommitted`, the working tree's changes are laid over the checkout.
    """
    if destination.exists():
        shutil.rmtree(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    checkout(repository, sha, destination)
    prefix = project_dir.resolve().relative_to(repository.resolve())
    digests = tree_digests(project_dir, sha)
    path = destination / prefix
    if uncommitted:
        _overlay_working_tree(project_dir, path, digests)
    return Workspace(path=path, source_digests=digests)


def prepare_commit_workspace(
    repository: Path, prefix: str, sha: str, destination: Path
) -> Workspace:
    """Check commit `sha` of any repository holding it (a bare mirror too) out into
    `destination`; the project is the folder `prefix` of that commit."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    checkout(repository, sha, destination)
    path = destination / prefix
    return Workspace(path=path, source_digests=tree_digests(path, sha))


def _overlay_working_tree(project_dir: Path, workspace: Path, digests: dict[str, str]) -> None:
    present = list_source_files(project_dir)
    for relative in present:
        source = project_dir / relative
        digest = _blob_digest(source)
        if digests.get(relative) == digest:
            continue
        target = workspace / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)
        digests[relative] = digest
    for gone in set(digests) - set(present):
        (workspace / gone).unlink(missing_ok=True)
        del digests[gone]


def _blob_digest(path: Path) -> str:
    """The id git would give this file, in the same form as `tree_digests`."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return f"120000:{_git_blob_id(os.fsencode(os.readlink(path)))}"
    mode = "100755" if info.st_mode & stat.S_IXUSR else "100644"
    return f"{mode}:{_git_blob_id(path.read_bytes())}"


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class OutputsError(Exception):
    """A job's outputs cannot be kept: the job fails with this message."""


class MissingOutputsError(OutputsError):
    """A job declared outputs that its command did not produce."""


class UnsafeOutputError(OutputsError):
    """An output glob or a matched file leads outside the workspace."""


class UnsafeRestoreError(ConveyorError):
    """A stored outputs manifest names a path outside the workspace: nothing is written."""

    exit_code = ExitCode.PIPELINE_FAILED


def collect_outputs(workspace: Path, patterns: list[str], blobs: BlobStore) -> str | None:
    """Store the files matching `patterns` as blobs; return the manifest's digest."""
    if not patterns:
        return None
    for pattern in patterns:  # a step's own globs too, and a spec never linted
        try:
            check_output_glob(pattern)
        except ValueError as error:
            raise UnsafeOutputError(f"outputs: {error}") from None
    root = workspace.resolve()
    manifest: dict[str, dict[str, object]] = {}
    for pattern in patterns:
        if pattern.startswith("!"):
            continue
        matched = wcglob.glob(pattern, root_dir=str(workspace), flags=GLOB_FLAGS)
        files = [m for m in matched if not under_state_dir(m) and (workspace / m).is_file()]
        if not files:
            raise MissingOutputsError(f"outputs: '{pattern}' matched no file")
        for relative in files:
            if filter_paths([relative], patterns):
                path = _inside(root, workspace / relative, relative)
                manifest[relative] = {
                    "digest": blobs.put_output(path),  # text reports masked
                    "executable": bool(path.stat().st_mode & stat.S_IXUSR),
                }
    return blobs.put_bytes(_canonical(manifest))


def _inside(root: Path, path: Path, relative: str) -> Path:
    """The file itself, if it (after every symlink) is inside the workspace."""
    real = path.resolve()
    if not real.is_relative_to(root):
        raise UnsafeOutputError(
            f"outputs: '{relative}' leads outside the workspace (to {real}) through a "
            "symbolic link; outputs must be files inside the workspace"
        )
    return real


def restore_outputs(manifest_digest: str, workspace: Path, blobs: BlobStore) -> int:
    """Put a manifest's files back into a workspace; returns how many.

    Every entry is checked before anything is written, so a manifest naming an absolute
    or `..` path writes nothing; folders are then made one at a time, never through a
    link that leads out of the workspace.
    """
    manifest = json.loads(blobs.get_bytes(manifest_digest))
    if not isinstance(manifest, dict):
        raise UnsafeRestoreError(f"the outputs manifest {manifest_digest} is not a mapping")
    root = workspace.resolve()
    parts = {
        relative: _restorable_parts(relative, entry, manifest_digest)
        for relative, entry in manifest.items()
    }
    for relative, entry in manifest.items():
        target = _restore_target(root, parts[relative], relative)
        if target.is_symlink() or target.exists():
            target.unlink()
        blobs.copy_to(entry["digest"], target)
        if entry.get("executable"):
            target.chmod(0o755)
    return len(manifest)


def _restorable_parts(relative: str, entry: object, manifest_digest: str) -> list[str]:
    """The path's components, if it is a plain relative path inside the workspace."""
    parts = relative.split("/")
    plain = all(part not in ("", ".", "..") and "\0" not in part for part in parts)
    if plain and isinstance(entry, dict) and isinstance(entry.get("digest"), str):
        return parts
    raise UnsafeRestoreError(
        f"refusing to restore cached outputs: {relative!r} is not a path inside the "
        f"workspace (manifest {manifest_digest}); nothing was written",
        hint="the cache entry was not written by Conveyor; `conveyor run --no-cache` "
        "runs the jobs again",
    )


def _restore_target(root: Path, parts: list[str], relative: str) -> Path:
    """Where a restored file goes: its folders made, none of them a link leading out."""
    current = root
    for part in parts[:-1]:
        current = current / part
        if current.is_symlink() or current.exists():
            current = current.resolve()
            if not current.is_relative_to(root) or not current.is_dir():
                raise UnsafeRestoreError(
                    f"refusing to restore cached outputs: {relative!r} would be written "
                    f"through {current}, which is not a folder inside the workspace",
                    hint="remove the symbolic link, or run with --no-cache",
                )
        else:
            current.mkdir()
    target = current / parts[-1]
    if target.is_dir() and not target.is_symlink():
        raise UnsafeRestoreError(
            f"refusing to restore cached outputs: {relative!r} is a folder in the workspace"
        )
    return target


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
