import hashlib
import os
from pathlib import Path

import pytest

from conveyor.errors import ConveyorError, InfrastructureError
from conveyor.store import BlobStore


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_put_bytes_then_get_bytes_round_trips(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")

    digest = blobs.put_bytes(b"hello")

    assert digest == _digest(b"hello")
    assert blobs.get_bytes(digest) == b"hello"
    assert blobs.has(digest)
    hex_digest = digest.removeprefix("sha256:")
    assert blobs.path(digest) == tmp_path / "blobs" / "sha256" / hex_digest[:2] / hex_digest


def test_put_file_streams_to_the_same_address_as_put_bytes(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    content = os.urandom(3 * 1024 * 1024 + 17)  # spans several read chunks
    source = tmp_path / "artifact.bin"
    source.write_bytes(content)

    digest = blobs.put_file(source)

    assert digest == _digest(content)
    assert blobs.put_bytes(content) == digest
    assert blobs.get_bytes(digest) == content
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []  # no temporary files left


def test_an_existing_blob_is_not_rewritten(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    digest = blobs.put_bytes(b"same")
    inode = blobs.path(digest).stat().st_ino
    source = tmp_path / "same.txt"
    source.write_bytes(b"same")

    blobs.put_bytes(b"same")
    blobs.put_file(source)

    assert blobs.path(digest).stat().st_ino == inode


def test_a_tampered_blob_is_detected_on_read_and_copy(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    digest = blobs.put_bytes(b"original")
    path = blobs.path(digest)
    path.chmod(0o644)
    path.write_bytes(b"tampered")

    with pytest.raises(InfrastructureError, match=f"blob {digest} is damaged"):
        blobs.get_bytes(digest)
    with pytest.raises(InfrastructureError, match="damaged"):
        blobs.copy_to(digest, tmp_path / "out" / "file")
    assert not (tmp_path / "out" / "file").exists()


def test_copy_to_creates_parents_and_writes_the_content(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    digest = blobs.put_bytes(b"binary\x00data")
    dest = tmp_path / "workspace" / "dist" / "app.bin"

    blobs.copy_to(digest, dest)
    blobs.copy_to(digest, dest)  # overwriting an earlier restore is fine

    assert dest.read_bytes() == b"binary\x00data"
    assert [p.name for p in dest.parent.iterdir()] == ["app.bin"]


def test_a_missing_blob_is_an_infrastructure_error(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    digest = _digest(b"never stored")

    assert not blobs.has(digest)
    with pytest.raises(InfrastructureError, match="missing"):
        blobs.get_bytes(digest)
    with pytest.raises(InfrastructureError, match="missing"):
        blobs.copy_to(digest, tmp_path / "out")


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:../../../etc/passwd",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "md5:" + "a" * 32,
        "a" * 64,
        "sha256:" + "a" * 64 + "/x",
    ],
)
def test_invalid_digests_are_refused(tmp_path: Path, digest: str) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    with pytest.raises(ConveyorError, match="not a blob digest"):
        blobs.path(digest)
    with pytest.raises(ConveyorError, match="not a blob digest"):
        blobs.get_bytes(digest)
