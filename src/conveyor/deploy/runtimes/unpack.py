"""An image's layers unpacked into an immutable release folder, keyed by digest.

    <releases_root>/<digest hex>/rootfs      the layers (gzip tar) applied in order
    <releases_root>/<digest hex>/image.json  Entrypoint, Cmd, Env, WorkingDir, Labels
                                             (+ repository, digest)

Layers are applied member by member by `layer.apply_layer`, which no member can leave
(no absolute paths, no `..`, nothing written through a symlink out of the tree, no device
files; see there); absolute symlinks, common in base images, are rewritten relative to the
rootfs so they stay inside it. OCI whiteouts (`.wh.<name>`, `.wh..wh..opq`) delete what
lower layers put there. Once all layers are applied, every symlink is checked to resolve
inside the rootfs, and the sandbox's mount points (/proc, /dev, /tmp, /data) are added
where the image lacks them. The folder is built in a temporary directory then renamed into place,
and made read-only, so a release never changes under a running replica; a second call for
the same digest reuses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from conveyor.deploy.runtimes.layer import apply_layer, check_symlinks
from conveyor.deploy.runtimes.sandbox import MOUNT_POINTS
from conveyor.errors import ConveyorError
from conveyor.supply.oci.model import Manifest, is_digest
from conveyor.supply.oci.store import ImageStore

IMAGE_FILE = "image.json"
ROOTFS = "rootfs"
_CONFIG_KEYS = ("Entrypoint", "Cmd", "Env", "WorkingDir", "Labels")
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def unpack_release(store: ImageStore, repository: str, digest: str, releases_root: Path) -> Path:
    """The release folder of `repository@digest`, unpacked on first use."""
    if not is_digest(digest):
        raise ConveyorError(f"invalid image digest {digest!r}", hint="expected sha256:<64 hex>")
    release = releases_root / digest.removeprefix("sha256:")
    if (release / IMAGE_FILE).is_file():
        _add_missing_mount_points(release / ROOTFS)  # unpacked by an older Conveyor
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
        check_symlinks(rootfs, f"image {repository}@{digest}")
        add_mount_points(rootfs)
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
    image["Labels"] = dict(image["Labels"] or {})
    return {**image, "repository": repository, "digest": digest}


def add_mount_points(rootfs: Path) -> None:
    """The empty folders the sandbox mounts over (/proc, /dev, /tmp, /data), which an
    image (busybox, scratch) may lack: bubblewrap cannot create them in a read-only root."""
    for name in MOUNT_POINTS:
        target = rootfs / name
        if not target.exists() and not target.is_symlink():
            target.mkdir(mode=0o755)


def _add_missing_mount_points(rootfs: Path) -> None:
    if all((rootfs / name).exists() for name in MOUNT_POINTS):
        return
    mode = stat.S_IMODE(rootfs.stat().st_mode)
    rootfs.chmod(mode | stat.S_IWUSR)
    try:
        add_mount_points(rootfs)
    finally:
        rootfs.chmod(mode)


def make_read_only(root: Path) -> None:
    """Drop every write bit (directories last, so the walk can still list them). Walked by
    descriptors (os.fwalk): a path deeper than PATH_MAX is reached like any other."""
    for _path, _dirnames, filenames, directory in os.fwalk(root, topdown=False):
        for name in filenames:
            mode = os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode
            if not stat.S_ISLNK(mode):
                os.chmod(name, stat.S_IMODE(mode) & ~_WRITE_BITS, dir_fd=directory)
        os.fchmod(directory, stat.S_IMODE(os.fstat(directory).st_mode) & ~_WRITE_BITS)


def remove_tree(path: Path) -> None:
    """Remove a file or a (possibly read-only) tree; absent is fine."""
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    if not path.exists():
        return
    for _path, _dirnames, _filenames, directory in os.fwalk(path):
        os.fchmod(directory, 0o755)
    shutil.rmtree(path)
