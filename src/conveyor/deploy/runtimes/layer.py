"""One image layer (a gzip tar) applied over a rootfs, with no member able to leave it.

Hand-written on purpose. tarfile's `data` filter is missing on Python 3.11.2 (Debian 12's
python3) and, where it exists, checked paths with `os.path.realpath`, which a chain of
nested symlinks longer than the resolver's limits defeats (CVE-2025-4517, CVE-2024-12718):
a later member then wrote through the chain out of the tree. The maintained alternatives
(backports.tarfile, tarsafe) check names the same way, and none applies OCI whiteouts. So
this does what container runtimes do, on any Python:

- Every path is walked one component at a time from a descriptor of the rootfs, each one
  opened with O_NOFOLLOW relative to its parent (`os.open(..., dir_fd=...)`). A parent that
  is a symlink is followed *inside* the rootfs (an absolute target starts at the rootfs,
  `..` stops there), at most 40 links per path, the kernel's own limit.
- The last component is never followed: whatever is there is removed and replaced.
- Regular files, folders, symlinks and hardlinks only; device files, fifos and anything
  else refuse the layer. A hardlink must name a regular file already in the rootfs.
- A symlink's absolute target is rewritten relative to the rootfs (base images have many);
  a symlink that leads out of the rootfs as the host resolves it (the process runtime has
  no chroot) refuses the layer, and `check_symlinks` checks them all again once every
  layer is applied, since a later layer can change what an earlier link goes through.
- Whiteouts (`.wh.<name>`, `.wh..wh..opq`) delete what lower layers put in their folder,
  before the layer's own entries are written; `<name>` must be a plain name (not `.`/`..`).
- Modes lose setuid, setgid, sticky and group/other write bits; owners are not kept.

Every refusal, and every malformed archive, is a ConveyorError naming layer and member.
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from conveyor.errors import ConveyorError

WHITEOUT = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
MAX_SYMLINKS = 40  # per path, as Linux's MAXSYMLINKS
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_KEPT_BITS = 0o755  # no setuid/setgid/sticky, no group/other write
_MISSING = -1  # a walk's stand-in for a folder that does not exist (yet)
# ValueError: a name or link with a NUL byte (possible in a PAX header) the OS refuses.
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError)


class _Refused(Exception):
    """Why one member cannot be unpacked; the caller names the layer and the member."""


def apply_layer(blob: bytes, rootfs: Path, digest: str) -> None:
    """Extract one gzip tar layer over `rootfs`: its whiteouts first, then its entries."""
    layer = f"image layer {digest}"
    try:
        tar = tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz")  # noqa: SIM115 (with below)
    except _TAR_ERRORS as error:
        raise ConveyorError(f"{layer} is not a gzip tar: {error}") from None
    with tar, _directory(rootfs) as root:
        members = _read_members(tar, layer)
        for member in members:
            if _is_whiteout(member.name):
                _each(layer, member.name, partial(_apply_whiteout, root, member.name))
        for member in members:
            if not _is_whiteout(member.name):
                _each(layer, member.name, partial(_extract, tar, root, member))


def check_symlinks(rootfs: Path, what: str) -> None:
    """Every symlink in `rootfs` resolves inside it, as the host would resolve it. Walked
    by descriptors (os.fwalk), so a tree deeper than PATH_MAX is checked all the same."""
    with _directory(rootfs) as root:
        for path, dirnames, filenames, directory in os.fwalk(rootfs):
            for name in [*dirnames, *filenames]:
                if stat.S_ISLNK(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode):
                    relative = Path(path, name).relative_to(rootfs).as_posix()
                    _each(what, relative, partial(_check_link, root, relative))


def _each(layer: str, name: str, step: Callable[[], None]) -> None:
    try:
        step()
    except _Refused as reason:
        raise ConveyorError(f"{layer}: cannot unpack {name!r}: {reason}") from None
    except _TAR_ERRORS as error:
        raise ConveyorError(f"{layer}: cannot unpack {name!r}: {_describe(error)}") from None


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _read_members(tar: tarfile.TarFile, layer: str) -> list[tarfile.TarInfo]:
    """All headers, and a refusal where tarfile would silently stop early (a bad or cut
    header after the first one reads as the end of the archive)."""
    members: list[tarfile.TarInfo] = []
    try:
        members.extend(tar)  # one by one: on an error, `members` says how far it got
        assert tar.fileobj is not None
        tar.fileobj.seek(tar.offset)
        end = tar.fileobj.read(tarfile.BLOCKSIZE)
    except _TAR_ERRORS as error:
        reason = f"{_describe(error)}, after {_last(members)}"
        raise ConveyorError(f"{layer} is not a readable gzip tar: {reason}") from None
    if end.strip(b"\0"):
        raise ConveyorError(f"{layer} has a bad tar header after {_last(members)}")
    if 0 < len(end) < tarfile.BLOCKSIZE:
        raise ConveyorError(f"{layer} is truncated after {_last(members)}")
    return members


def _last(members: list[tarfile.TarInfo]) -> str:
    return f"member {members[-1].name!r}" if members else "its start"


# --- walking inside the rootfs --------------------------------------------------------------


@contextmanager
def _directory(path: Path) -> Iterator[int]:
    descriptor = os.open(path, _DIR_FLAGS)
    try:
        yield descriptor
    finally:
        os.close(descriptor)


@contextmanager
def _folder(root: int, parts: list[str], *, create: bool) -> Iterator[int]:
    """A descriptor of the folder `parts` below `root`, symlinks followed inside the root
    (created on the way when `create`); _MISSING when it does not exist."""
    descriptor = _walk(root, parts, create=create, clamp=True)
    try:
        yield descriptor
    finally:
        if descriptor != _MISSING:
            os.close(descriptor)


def _walk(root: int, parts: list[str], *, create: bool, clamp: bool) -> int:
    """Resolve `parts` from `root` one component at a time, never following a symlink
    with the kernel. `clamp`: `..` and absolute targets stop at the root (extraction);
    otherwise leaving the root is refused (how the host will see a symlink)."""
    path = [os.dup(root)]  # descriptors from the root down; `..` pops one
    pending = list(reversed(parts))
    links = 0
    try:
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(path) == 1 and not clamp:
                    raise _Refused("unsafe symlink: it leads out of the image")
                if len(path) > 1:
                    _close(path.pop())
                continue
            step = _step(path[-1], part, create=create)
            if isinstance(step, int):
                path.append(step)
                continue
            links += 1
            if links > MAX_SYMLINKS:
                raise _Refused(f"unsafe path: it goes through more than {MAX_SYMLINKS} symlinks")
            if step.startswith("/"):
                if not clamp:
                    raise _Refused("unsafe symlink: it leads out of the image")
                while len(path) > 1:
                    _close(path.pop())
            pending.extend(reversed(step.split("/")))
        return path.pop()
    finally:
        for descriptor in path:
            _close(descriptor)


def _step(parent: int, name: str, *, create: bool) -> int | str:
    """The folder `name` in `parent` opened, or the target of the symlink there; _MISSING
    when there is no folder (and none is to be created)."""
    if parent == _MISSING:
        return _MISSING
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            return _MISSING
        os.mkdir(name, 0o755, dir_fd=parent)
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
        return os.readlink(name, dir_fd=parent)
    if create:
        raise _Refused(f"{name!r} is in the way: it is not a folder")
    return _MISSING


def _close(descriptor: int) -> None:
    if descriptor != _MISSING:
        os.close(descriptor)


def _components(name: str) -> list[str]:
    if name.startswith("/"):
        raise _Refused("unsafe path: it is absolute")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _Refused("unsafe path: it has a '..' component")
    return parts


def _remove(parent: int, name: str) -> None:
    """Remove whatever `name` is in `parent` (a folder with all it holds); never follow."""
    try:
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(name, dir_fd=parent)
    else:
        os.unlink(name, dir_fd=parent)


# --- whiteouts ------------------------------------------------------------------------------


def _is_whiteout(name: str) -> bool:
    return posixpath.basename(name.rstrip("/")).startswith(WHITEOUT)


def _apply_whiteout(root: int, name: str) -> None:
    *folder, base = _components(name)
    hidden = base.removeprefix(WHITEOUT)
    if base != OPAQUE_WHITEOUT and hidden in ("", ".", ".."):
        raise _Refused("unsafe whiteout: it names no file of its folder")
    with _folder(root, folder, create=False) as parent:
        if parent == _MISSING:
            return
        for child in os.listdir(parent) if base == OPAQUE_WHITEOUT else [hidden]:
            _remove(parent, child)


# --- entries --------------------------------------------------------------------------------


def _extract(tar: tarfile.TarFile, root: int, member: tarfile.TarInfo) -> None:
    parts = _components(member.name)
    if not parts:
        if member.isdir():
            return  # the rootfs itself ("./"): its mode is ours to keep
        raise _Refused("unsafe path: it names the image's root")
    *folder, base = parts
    with _folder(root, folder, create=True) as parent:
        if member.isdir():
            _make_folder(parent, base, member.mode)
        elif member.isreg():
            _write_file(tar, parent, base, member)
        elif member.issym():
            _make_symlink(root, parent, parts, member.linkname)
        elif member.islnk():
            _make_hardlink(root, parent, base, member.linkname)
        else:
            raise _Refused(f"unsafe: {_kind(member)} are not allowed in an image")


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr() or member.isblk():
        return "device files"
    if member.isfifo():
        return "fifos"
    return f"members of tar type {member.type!r}"


def _make_folder(parent: int, name: str, mode: int) -> None:
    try:
        existing = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
    except FileNotFoundError:
        existing = 0
    if not stat.S_ISDIR(existing):
        _remove(parent, name)
        os.mkdir(name, 0o700, dir_fd=parent)
    descriptor = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        os.fchmod(descriptor, mode & _KEPT_BITS | 0o700)  # owner rwx until it is done
    finally:
        os.close(descriptor)


def _write_file(tar: tarfile.TarFile, parent: int, name: str, member: tarfile.TarInfo) -> None:
    source = tar.extractfile(member)
    assert source is not None  # a regular member always has a reader
    _remove(parent, name)
    descriptor = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
    with source, open(descriptor, "wb") as target:
        shutil.copyfileobj(source, target)
        os.fchmod(descriptor, member.mode & _KEPT_BITS | 0o600)
        os.utime(descriptor, (member.mtime, member.mtime))


def _make_symlink(root: int, parent: int, parts: list[str], linkname: str) -> None:
    """The link as it is, but an absolute target made relative to the rootfs."""
    if not linkname:
        raise _Refused("the symlink has no target")
    target = linkname
    if linkname.startswith("/"):
        link_folder = posixpath.join("/", *parts[:-1])
        target = posixpath.relpath(posixpath.normpath(linkname), link_folder)
    _remove(parent, parts[-1])
    os.symlink(target, parts[-1], dir_fd=parent)
    _check_link(root, "/".join(parts))


def _check_link(root: int, name: str) -> None:
    """The symlink `name` resolves inside the root, link by link as the kernel would."""
    _close(_walk(root, name.split("/"), create=False, clamp=False))


def _make_hardlink(root: int, parent: int, name: str, linkname: str) -> None:
    *folder, base = _components(linkname) or [""]
    with _folder(root, folder, create=False) as source_parent:
        source = _regular_file(source_parent, base)
        if source is None:
            raise _Refused(f"unsafe hardlink: {linkname!r} is not a file already in the image")
        try:
            existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if (existing.st_dev, existing.st_ino) == (source.st_dev, source.st_ino):
                return  # already that file
        except FileNotFoundError:
            pass
        _remove(parent, name)
        os.link(base, name, src_dir_fd=source_parent, dst_dir_fd=parent, follow_symlinks=False)


def _regular_file(parent: int, name: str) -> os.stat_result | None:
    if parent == _MISSING or not name:
        return None
    try:
        found = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return found if stat.S_ISREG(found.st_mode) else None
