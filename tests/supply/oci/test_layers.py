"""Deterministic layers: same entries, same bytes; owners, modes, times and order normalised."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from conveyor.errors import ConveyorError
from conveyor.supply.oci.layers import LayerEntry, build_layer, layer_tar, tree_entries

EPOCH = 1_700_000_000


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        return tar.getmembers()


def make_tree(root: Path, *, mode: int, mtime: int) -> Path:
    files = {"app/main.py": b"print('hi')\n", "app/util/__init__.py": b"", "run.sh": b"#!/bin/sh\n"}
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o755 if name.endswith(".sh") else mode)
        os.utime(path, (mtime, mtime))
    return root


def test_the_same_entries_in_any_order_give_the_same_bytes() -> None:
    entries = [LayerEntry.of_bytes(f"srv/{n}.txt", n.encode()) for n in ("b", "a", "c")]

    first = build_layer(entries, EPOCH)
    second = build_layer(list(reversed(entries)), EPOCH)

    assert first.data == second.data
    assert first.digest == second.digest == "sha256:" + hashlib.sha256(first.data).hexdigest()


def test_the_same_files_in_two_folders_with_other_times_and_modes_give_the_same_layer(
    tmp_path: Path,
) -> None:
    one = make_tree(tmp_path / "one", mode=0o600, mtime=1_000_000)
    two = make_tree(tmp_path / "two", mode=0o664, mtime=2_000_000_000)

    first = build_layer(tree_entries(one, "/app"), EPOCH)
    second = build_layer(tree_entries(two, "/app"), EPOCH)

    assert first.data == second.data


def test_entries_are_sorted_with_parents_owned_by_root_at_the_given_time(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", mode=0o600, mtime=1)
    (tree / "link").symlink_to("app/main.py")

    found = members(build_layer(tree_entries(tree, "/srv"), EPOCH).data)

    assert [(m.name, m.type, oct(m.mode)) for m in found] == [
        ("srv", tarfile.DIRTYPE, "0o755"),
        ("srv/app", tarfile.DIRTYPE, "0o755"),
        ("srv/app/main.py", tarfile.REGTYPE, "0o644"),
        ("srv/app/util", tarfile.DIRTYPE, "0o755"),
        ("srv/app/util/__init__.py", tarfile.REGTYPE, "0o644"),
        ("srv/link", tarfile.SYMTYPE, "0o777"),
        ("srv/run.sh", tarfile.REGTYPE, "0o755"),
    ]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in found} == {(0, 0, "", "", EPOCH)}
    assert next(m.linkname for m in found if m.name == "srv/link") == "app/main.py"


def test_the_gzip_header_carries_no_time_and_no_name_and_the_diff_id_is_the_tar_digest() -> None:
    layer = build_layer([LayerEntry.of_bytes("a.txt", b"a")], EPOCH)

    assert layer.data[3] == 0  # FLG: no FNAME, no FEXTRA, no FCOMMENT
    assert layer.data[4:8] == b"\0\0\0\0"  # MTIME
    tar = gzip.decompress(layer.data)
    assert layer.diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert tar == layer_tar([LayerEntry.of_bytes("a.txt", b"a")], EPOCH)
    assert layer.descriptor().size == len(layer.data)


def test_another_time_gives_another_layer() -> None:
    entries = [LayerEntry.of_bytes("a.txt", b"a")]

    assert build_layer(entries, EPOCH).digest != build_layer(entries, EPOCH + 1).digest


def test_long_and_non_ascii_names_survive(tmp_path: Path) -> None:
    long_name = "d/" + "x" * 150 + "/é.txt"

    found = members(build_layer([LayerEntry.of_bytes(long_name, b"1")], EPOCH).data)

    assert found[-1].name == long_name


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([LayerEntry.of_bytes("../etc/passwd", b"")], "invalid path"),
        ([LayerEntry.of_bytes("a", b"1"), LayerEntry.of_bytes("/a", b"2")], "two entries for a"),
        ([LayerEntry.of_bytes("a", b"1"), LayerEntry.of_bytes("a/b", b"2")], "both a file"),
    ],
)
def test_impossible_layers_are_refused(entries: list[LayerEntry], message: str) -> None:
    with pytest.raises(ConveyorError, match=message):
        build_layer(entries, EPOCH)


def test_tree_entries_apply_globs_and_leave_out_version_control_and_bytecode(
    tmp_path: Path,
) -> None:
    tree = make_tree(tmp_path, mode=0o644, mtime=1)
    for name in (".git/HEAD", "app/__pycache__/main.cpython-311.pyc", ".conveyor-out/j/x.json"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("x")

    paths = [e.path for e in tree_entries(tree, "/app", ("**",), ("run.sh",))]

    assert paths == ["/app/app/main.py", "/app/app/util/__init__.py"]
