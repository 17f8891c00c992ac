"""Content-addressed blob store: job logs, output manifests and cached files.

A blob lives at `root/sha256/<first two hex>/<hex>` and is never rewritten. Writes go to a
temporary file first and are renamed into place, so a reader never sees half a blob.
Reads verify the digest, so a damaged blob is reported instead of silently restored.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from conveyor.errors import ConveyorError, InfrastructureError
from conveyor.store.private import PRIVATE_DIR, private_dir
from conveyor.store.redaction import Redaction

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_CHUNK = 1 << 20
# Read-only, so a stray write cannot change content behind its digest; the owner's alone,
# since blobs are job logs and outputs.
_BLOB_MODE = 0o400


class BlobStore:
    def __init__(self, root: Path, redaction: Redaction | None = None) -> None:
        self.root = root
        self.redaction = redaction or Redaction()
        self._folders_made = False  # root, tmp/ and sha256/: made private once, not per blob

    def put_report(self, data: bytes) -> str:
        """A text report (JUnit XML, tests JSON, SARIF), stored with its secrets masked."""
        return self.put_bytes(self.redaction.data(data))

    def put_output(self, path: Path) -> str:
        """A job's output file; one that is a text report is stored with its secrets masked."""
        masked = self.redaction.output(path)
        return self.put_file(path) if masked is None else self.put_bytes(masked)

    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            with _temp_file(self._tmp_dir()) as (tmp, handle):
                handle.write(data)
                handle.close()
                self._install(tmp, digest)
        return digest

    def put_file(self, path: Path) -> str:
        """Store a file's content, hashing it while it is copied (one read of the source)."""
        if path.stat().st_size <= _CHUNK:  # small (most logs): hash first, write only if new
            return self.put_bytes(path.read_bytes())
        with path.open("rb") as source, _temp_file(self._tmp_dir()) as (tmp, handle):
            hasher = hashlib.sha256()
            while chunk := source.read(_CHUNK):
                hasher.update(chunk)
                handle.write(chunk)
            handle.close()
            digest = "sha256:" + hasher.hexdigest()
            if not self.has(digest):
                self._install(tmp, digest)
        return digest

    def get_bytes(self, digest: str) -> bytes:
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise self._missing(digest) from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise self._damaged(digest)
        return data

    def path(self, digest: str) -> Path:
        hex_digest = _parse(digest)
        return self.root / "sha256" / hex_digest[:2] / hex_digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def copy_to(self, digest: str, dest: Path) -> None:
        """Write the blob to `dest` (creating parents), verifying it on the way."""
        source_path = self.path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            source = source_path.open("rb")
        except FileNotFoundError:
            raise self._missing(digest) from None
        with source, _temp_file(dest.parent, mode=0o666) as (tmp, handle):
            hasher = hashlib.sha256()
            while chunk := source.read(_CHUNK):
                hasher.update(chunk)
                handle.write(chunk)
            handle.close()
            if "sha256:" + hasher.hexdigest() != digest:
                raise self._damaged(digest)
            os.replace(tmp, dest)

    def _tmp_dir(self) -> Path:
        if not self._folders_made:
            private_dir(self.root)
            private_dir(self.root / "tmp")
            private_dir(self.root / "sha256")
            self._folders_made = True
        return self.root / "tmp"

    def _install(self, tmp: Path, digest: str) -> None:
        target = self.path(digest)
        target.parent.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        os.chmod(tmp, _BLOB_MODE)
        os.replace(tmp, target)

    def _missing(self, digest: str) -> InfrastructureError:
        return InfrastructureError(
            f"blob {digest} is missing from {self.root}",
            hint="the state directory was changed outside Conveyor; rerun the job to recreate it",
        )

    def _damaged(self, digest: str) -> InfrastructureError:
        return InfrastructureError(
            f"blob {digest} is damaged: its content no longer matches its digest "
            f"({self.path(digest)})",
            hint="delete the file and rerun the job that produced it",
        )


def _parse(digest: str) -> str:
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise ConveyorError(
            f"not a blob digest: {digest!r}", hint="digests look like sha256:<64 hex digits>"
        )
    return match.group(1)


@contextmanager
def _temp_file(directory: Path, mode: int = 0o600) -> Iterator[tuple[Path, BinaryIO]]:
    """A new file in `directory`, removed on exit unless it was renamed away."""
    path = directory / f".tmp-{secrets.token_hex(8)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield path, handle
    finally:
        path.unlink(missing_ok=True)
