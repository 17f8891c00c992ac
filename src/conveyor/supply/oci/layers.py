"""Deterministic image layers: the same entries always give the same bytes.

A layer is a PAX tar (POSIX; for ordinary names Python writes plain ustar headers and adds
an extended header only for long or non-ASCII names) compressed with gzip at a fixed
level with no timestamp or file name in the gzip header. Entries are sorted by path and
every parent directory is written explicitly; owners are 0:0 with empty names; modes are
0o755 for directories and executables, 0o644 for other files, 0o777 for symlinks (whose
targets are kept); every mtime is the one given (the commit time, SOURCE_DATE_EPOCH).
The mtime is set, not clamped: a checkout's files are always newer than the commit, and
an older file's own mtime would otherwise leak the build machine's state into the digest.

Byte-identical output also needs the same zlib: gzip output can differ across zlib
versions, which the `diff_id` (the digest of the uncompressed tar) does not.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from conveyor.errors import ConveyorError
from conveyor.spec.globs import filter_paths, match_any
from conveyor.supply.oci.model import LAYER_TAR_GZIP, Descriptor, digest_of

GZIP_LEVEL = 6  # zlib's default: a fixed level, so a fixed output
DIR_MODE = 0o755
EXEC_MODE = 0o755
FILE_MODE = 0o644
LINK_MODE = 0o777
# Never part of an image: version control, Conveyor's own state, bytecode caches.
SKIPPED_DIRS = frozenset({".git", ".conveyor", ".conveyor-out", "__pycache__"})


@dataclass(frozen=True)
class LayerEntry:
    """One file of a layer: its path in the image and where its content comes from.

    Exactly one of `source` (a file on disk, read when the layer is built), `data` (the
    bytes), `link` (a symlink target) or `directory` is set.
    """

    path: str
    source: Path | None = None
    data: bytes | None = None
    link: str | None = None
    executable: bool = False  # for `data` entries; a `source` file's own x bit decides
    directory: bool = False  # an explicit (possibly empty) directory

    @classmethod
    def file(cls, path: str, source: Path) -> LayerEntry:
        """A file from disk; a symlink on disk stays a symlink."""
        if source.is_symlink():
            return cls(path=path, link=os.readlink(source))
        return cls(path=path, source=source)

    @classmethod
    def of_bytes(cls, path: str, data: bytes, *, executable: bool = False) -> LayerEntry:
        return cls(path=path, data=data, executable=executable)

    @classmethod
    def symlink(cls, path: str, target: str) -> LayerEntry:
        return cls(path=path, link=target)

    @classmethod
    def empty_directory(cls, path: str) -> LayerEntry:
        return cls(path=path, directory=True)


@dataclass(frozen=True)
class LayerBlob:
    """A built layer: the gzip bytes, their digest, and the tar's digest (the diff_id)."""

    data: bytes
    digest: str
    diff_id: str

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=LAYER_TAR_GZIP, digest=self.digest, size=self.size)


def build_layer(entries: Iterable[LayerEntry], mtime: int) -> LayerBlob:
    """A layer holding `entries` (plus their parent directories), every mtime `mtime`."""
    tar_bytes = layer_tar(entries, mtime)
    compressed = gzip.compress(tar_bytes, compresslevel=GZIP_LEVEL, mtime=0)
    return LayerBlob(data=compressed, digest=digest_of(compressed), diff_id=digest_of(tar_bytes))


def layer_tar(entries: Iterable[LayerEntry], mtime: int) -> bytes:
    """The uncompressed tar of a layer (its digest is the layer's diff_id)."""
    by_path = _by_path(entries)
    directories = _parent_directories(by_path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for parts in sorted(set(directories) | set(by_path)):
            name = "/".join(parts)
            entry = by_path.get(parts)
            if entry is None:
                tar.addfile(_info(name + "/", tarfile.DIRTYPE, DIR_MODE, mtime))
            else:
                _add_entry(tar, name, entry, mtime)
    return buffer.getvalue()


def tree_entries(
    root: Path, prefix: str, include: tuple[str, ...] = ("**",), exclude: tuple[str, ...] = ()
) -> list[LayerEntry]:
    """The files under `root` matching the globs (`exclude` wins), placed under `prefix`."""
    chosen = [p for p in filter_paths(_walk(root), include) if not match_any(p, exclude)]
    base = PurePosixPath("/", prefix)
    return [LayerEntry.file(str(base / relative), root / relative) for relative in chosen]


def _walk(root: Path) -> list[str]:
    found: list[str] = []
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        relative = here.relative_to(root)
        # os.walk does not descend into symlinked folders: they are kept as symlinks.
        links = [d for d in dirnames if (here / d).is_symlink()]
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and d not in links)
        found.extend((relative / name).as_posix() for name in [*filenames, *links])
    return found


def normalise_path(path: str) -> tuple[str, ...]:
    """`/app/main.py` -> ("app", "main.py"); refuses paths that climb out with `..`."""
    parts = tuple(p for p in PurePosixPath(path).parts if p not in ("/", "."))
    if not parts or ".." in parts:
        raise ConveyorError(f"invalid path in an image layer: {path!r}")
    return parts


def _by_path(entries: Iterable[LayerEntry]) -> dict[tuple[str, ...], LayerEntry]:
    by_path: dict[tuple[str, ...], LayerEntry] = {}
    for entry in entries:
        parts = normalise_path(entry.path)
        if parts in by_path:
            raise ConveyorError(f"two entries for {'/'.join(parts)} in one image layer")
        by_path[parts] = entry
    return by_path


def _parent_directories(by_path: dict[tuple[str, ...], LayerEntry]) -> set[tuple[str, ...]]:
    parents = {parts[:depth] for parts in by_path for depth in range(1, len(parts))}
    clashing = sorted("/".join(p) for p in parents if p in by_path and not by_path[p].directory)
    if clashing:
        raise ConveyorError(f"{clashing[0]} is both a file and a directory in an image layer")
    return parents


def _add_entry(tar: tarfile.TarFile, name: str, entry: LayerEntry, mtime: int) -> None:
    if entry.directory:
        tar.addfile(_info(name + "/", tarfile.DIRTYPE, DIR_MODE, mtime))
    elif entry.link is not None:
        info = _info(name, tarfile.SYMTYPE, LINK_MODE, mtime)
        info.linkname = entry.link
        tar.addfile(info)
    elif entry.data is not None:
        info = _info(name, tarfile.REGTYPE, EXEC_MODE if entry.executable else FILE_MODE, mtime)
        info.size = len(entry.data)
        tar.addfile(info, io.BytesIO(entry.data))
    elif entry.source is not None:
        _add_file(tar, name, entry.source, mtime)
    else:
        raise ConveyorError(f"image layer entry {name} has no content")


def _add_file(tar: tarfile.TarFile, name: str, source: Path, mtime: int) -> None:
    try:
        with source.open("rb") as handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise ConveyorError(f"{source} is not a regular file (image layers hold files)")
            executable = bool(status.st_mode & 0o111)
            info = _info(name, tarfile.REGTYPE, EXEC_MODE if executable else FILE_MODE, mtime)
            info.size = status.st_size
            tar.addfile(info, handle)
    except OSError as error:
        raise ConveyorError(f"cannot read {source} for an image layer: {error}") from None


def _info(name: str, kind: bytes, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
