"""An image's layers unpacked into an immutable release folder, keyed by digest.

    <releases_root>/<digest hex>/rootfs      the layers (gzip tar) applied in order
    <releases_root>/<digest hex>/image.json  Entrypoint, Cmd, Env, WorkingDir (+ digest)

Layers are applied with tarfile's `data` filter (no absolute paths, no `..`, no links
out of the tree, no device files); absolute symlinks, common in base images, are first
rewritten relative to the rootfs so they stay inside it. OCI whiteouts (`.wh.<name>`,
`.wh..wh..opq`) delete what lower layers put there. The folder is built in a temporary
directory then renamed into place, and made read-only, so a release never changes under
a running replica; a second call for the same digest reuses it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.supply.oci.model import Manifest, is_digest
from conveyor.supply.oci.store import ImageStore

IMAGE_FILE = "image.json"
ROOTFS = "rootfs"
WHITEOUT = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
_CONFIG_KEYS = ("Entrypoint", "Cmd", "Env", "WorkingDir")
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def unpack_release(store: ImageStore, repository: str, digest: str, releases_root: Path) -> Path:
    """The release folder of `repository@digest`, unpacked on first use."""
    if not is_digest(digest):
        raise ConveyorError(f"invalid image digest {digest!r}", hint="expected sha256:<64 hex>")
    release = releases_root / digest.removeprefix("sha256:")
    if (release / IMAGE_FILE).is_file():
        return release
    manifest = Manifest.from_bytes(store.get_manifest(repository, digest)[0])
    config = json.loads(store.get_blob(repository, manifest.config.digest))
    releases_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=releases_root, prefix=f".{release.name}."))
    try:
        rootfs = scratch / ROOTFS
        rootfs.mkdir()
        for layer in manifest.layers:
            apply_layer(store.get_blob(repository, layer.digest), rootfs, layer.digest)
        image = image_settings(config, repository, digest)
        (scratch / IMAGE_FILE).write_text(json.dumps(image, indent=2, sort_keys=True))
        make_read_only(scratch)
        os.rename(scratch, release)
    except OSError as error:
        remove_tree(scratch)
        if (release / IMAGE_FILE).is_file():  # another caller unpacked it first
            return release
        raise ConveyorError(f"cannot unpack {repository}@{digest}: {error}") from None
    except BaseException:
        remove_tree(scratch)
        raise
    return release


def image_settings(config: dict[str, Any], repository: str, digest: str) -> dict[str, Any]:
    settings = config.get("config") or {}
    image = {key: settings.get(key) for key in _CONFIG_KEYS}
    image["Entrypoint"] = list(image["Entrypoint"] or [])
    image["Cmd"] = list(image["Cmd"] or [])
    image["Env"] = list(image["Env"] or [])
    image["WorkingDir"] = image["WorkingDir"] or "/"
    return {**image, "repository": repository, "digest": digest}


def apply_layer(blob: bytes, rootfs: Path, digest: str) -> None:
    """Extract one gzip tar layer over `rootfs`, whiteouts first."""
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                if posixpath.basename(member.name).startswith(WHITEOUT):
                    _apply_whiteout(member.name, rootfs, digest)
            kept = [m for m in members if not posixpath.basename(m.name).startswith(WHITEOUT)]
            for member in kept:
                _check_name(member.name, digest)
            tar.extractall(rootfs, members=kept, filter=_inside(rootfs))  # noqa: S202 (data filter)
    except tarfile.FilterError as error:
        raise ConveyorError(f"image layer {digest} is unsafe to unpack: {error}") from None
    except (tarfile.TarError, EOFError) as error:
        raise ConveyorError(f"image layer {digest} is not a gzip tar: {error}") from None


def _check_name(name: str, digest: str) -> None:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise ConveyorError(f"image layer {digest} holds an unsafe path {name!r}")


def _apply_whiteout(name: str, rootfs: Path, digest: str) -> None:
    _check_name(name, digest)
    directory, base = posixpath.split(name.strip("/"))
    parent = rootfs / directory
    if not parent.resolve().is_relative_to(rootfs.resolve()):
        raise ConveyorError(f"image layer {digest} has a whiteout outside the image: {name!r}")
    if base == OPAQUE_WHITEOUT:
        for child in parent.iterdir() if parent.is_dir() else ():
            remove_tree(child)
    else:
        remove_tree(parent / base.removeprefix(WHITEOUT))


def _inside(rootfs: Path) -> Any:
    """The `data` filter, after pointing absolute symlinks at the rootfs instead of /."""

    def keep_inside(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo | None:
        if member.issym() and member.linkname.startswith("/"):
            link_dir = posixpath.dirname("/" + member.name.strip("/"))
            relative = posixpath.relpath(posixpath.normpath(member.linkname), link_dir)
            member = member.replace(linkname=relative, deep=False)
        return tarfile.data_filter(member, destination)

    return keep_inside


def make_read_only(root: Path) -> None:
    """Drop every write bit (directories last, so the walk can still list them)."""
    for directory, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            _drop_write(Path(directory, name))
        _drop_write(Path(directory))


def _drop_write(path: Path) -> None:
    mode = path.lstat().st_mode
    if not stat.S_ISLNK(mode):
        path.chmod(stat.S_IMODE(mode) & ~_WRITE_BITS)


def remove_tree(path: Path) -> None:
    """Remove a file or a (possibly read-only) tree; absent is fine."""
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    if not path.exists():
        return
    for directory, _dirnames, _filenames in os.walk(path):
        Path(directory).chmod(0o755)
    shutil.rmtree(path)
