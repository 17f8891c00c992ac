"""Files between the run's machine and a worker's, as OCI artifacts: no shared file system.

An artifact is an OCI image manifest with `artifactType` set, the empty config, and one
layer: a tar of the files, sealed (see sealing.py). It lives in a registry
(`http://host:port`) or, for one machine, an OCI layout folder (`oci:/path`). It is
always read by the manifest digest a result names, never by a tag, so a delivery that
died half-way is never read.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

from conveyor.errors import ConveyorError
from conveyor.supply.oci.layout import LayoutStore
from conveyor.supply.oci.model import EMPTY_JSON, EMPTY_JSON_BYTES, MANIFEST, canonical_json
from conveyor.supply.oci.registry import RegistryStore
from conveyor.supply.oci.store import ImageStore

ARTIFACT_TYPE = "application/vnd.conveyor.job-files.v1"
LAYER_TYPE = "application/vnd.conveyor.job-files.v1.tar+fernet"
REPOSITORY = "conveyor/job-files"
LAYOUT_PREFIX = "oci:"
SealFn = Callable[[bytes], bytes]


class ArtifactError(ConveyorError):
    """An artifact that cannot be read or written safely."""


def open_store(location: str) -> ImageStore:
    if location.startswith(LAYOUT_PREFIX):
        return LayoutStore(Path(location.removeprefix(LAYOUT_PREFIX)))
    return RegistryStore(location, insecure=location.startswith("http://"))


class ArtifactStore:
    def __init__(self, store: ImageStore, seal: SealFn, unseal: SealFn) -> None:
        self.store = store
        self._seal = seal
        self._unseal = unseal

    def push(self, root: Path, files: Iterable[str], tag: str) -> str | None:
        """Store `files` (relative to `root`) as one artifact; its digest, None if none."""
        names = sorted(set(files))
        if not names:
            return None
        layer = self._seal(pack(root, names))
        layer_digest = self.store.put_blob(REPOSITORY, layer)
        config_digest = self.store.put_blob(REPOSITORY, EMPTY_JSON_BYTES)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_JSON, "digest": config_digest, "size": 2},
            "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": len(layer)}],
        }
        return self.store.put_manifest(REPOSITORY, canonical_json(manifest), MANIFEST, (tag,))

    def pull(self, digest: str, root: Path) -> int:
        """Write the artifact's files under `root`; how many."""
        raw, _ = self.store.get_manifest(REPOSITORY, digest)
        manifest = json.loads(raw)
        if manifest.get("artifactType") != ARTIFACT_TYPE or len(manifest.get("layers", [])) != 1:
            raise ArtifactError(f"{digest} is not a job-files artifact")
        layer = manifest["layers"][0]
        data = self._unseal(self.store.get_blob(REPOSITORY, layer["digest"]))
        return unpack(data, root)


def pack(root: Path, names: list[str]) -> bytes:
    """A tar of regular files only (links and folders are not carried), mode kept."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            path = root / name
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                continue
            entry = tarfile.TarInfo(name)
            entry.size = info.st_size
            entry.mode = 0o755 if info.st_mode & stat.S_IXUSR else 0o644
            entry.mtime = int(info.st_mtime)
            with path.open("rb") as file:
                tar.addfile(entry, file)
    return buffer.getvalue()


def unpack(data: bytes, root: Path) -> int:
    """Write a tar's regular files under `root`, refusing any path that leads out."""
    real_root = root.resolve()
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = tar.getmembers()
        for member in members:  # everything is checked before anything is written
            _check_member(member)
        for member in members:
            target = _target(real_root, member.name)
            source = tar.extractfile(member)
            assert source is not None
            if target.is_symlink() or target.exists():
                target.unlink()
            with open(target, "wb") as out:
                out.write(source.read())
            os.chmod(target, 0o755 if member.mode & stat.S_IXUSR else 0o644)
            count += 1
    return count


def _check_member(member: tarfile.TarInfo) -> None:
    parts = member.name.split("/")
    plain = all(part not in ("", ".", "..") and "\0" not in part for part in parts)
    if not member.isreg() or not plain:
        raise ArtifactError(f"refusing an artifact entry {member.name!r}: not a plain file path")


def _target(root: Path, name: str) -> Path:
    current = root
    for part in name.split("/")[:-1]:
        current = current / part
        if current.is_symlink() or current.exists():
            current = current.resolve()
            if not current.is_relative_to(root) or not current.is_dir():
                raise ArtifactError(f"refusing to write {name!r} through {current}")
        else:
            current.mkdir()
    target = current / name.rsplit("/", maxsplit=1)[-1]
    if target.is_dir() and not target.is_symlink():
        raise ArtifactError(f"refusing to write {name!r}: it is a folder here")
    return target
