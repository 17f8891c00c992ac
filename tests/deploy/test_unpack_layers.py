"""Hostile image layers: nothing they hold is written outside the rootfs, on any Python.

The payloads are the public ones against tarfile's `data` filter (CVE-2025-4517: a chain of
nested symlinks deeper than realpath resolves, then a member written through it; and
CVE-2024-12718: a symlink out of the tree, then a member changing what it points at), plus
hardlinks out, whiteouts at the root, `..` and absolute names, device nodes and broken
archives. Each layer is built here with tarfile.TarInfo. Beside the rootfs sits a `victim`
folder, which every test checks is untouched.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_cli
from conveyor.deploy.runtimes.layer import apply_layer, check_symlinks
from conveyor.deploy.runtimes.unpack import unpack_release
from conveyor.errors import ConveyorError
from conveyor.service import environments as envs
from conveyor.supply.oci import model
from conveyor.supply.oci.layout import LayoutStore
from deploy.apps import make_project

DIGEST = "sha256:" + "ab" * 32
ORIGINAL = b"original"


@dataclass
class Scene:
    rootfs: Path
    victim: Path

    def untouched(self) -> bool:
        """The victim folder holds its one file, unchanged, and nothing was added."""
        file = self.victim / "file"
        return (
            sorted(p.name for p in self.victim.iterdir()) == ["file"]
            and file.read_bytes() == ORIGINAL
            and stat.S_IMODE(file.stat().st_mode) == 0o644
            and stat.S_IMODE(self.victim.stat().st_mode) == 0o755
            and file.stat().st_nlink == 1
            and sorted(p.name for p in self.rootfs.parent.iterdir()) == ["rootfs", "victim"]
        )


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    rootfs, victim = tmp_path / "rootfs", tmp_path / "victim"
    rootfs.mkdir()
    victim.mkdir(mode=0o755)
    (victim / "file").write_bytes(ORIGINAL)
    (victim / "file").chmod(0o644)
    return Scene(rootfs, victim)


def folder(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info


def symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def hardlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


def special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3
    return info


def file(name: str, data: bytes = b"pwned", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


Member = tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]


def tar_bytes(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tuple):
                tar.addfile(member[0], io.BytesIO(member[1]))
            else:
                tar.addfile(member)
    return buffer.getvalue()


def layer(members: list[Member]) -> bytes:
    return gzip.compress(tar_bytes(members), mtime=0)


def refused(scene: Scene, members: list[Member], *message: str) -> str:
    with pytest.raises(ConveyorError) as raised:
        apply_layer(layer(members), scene.rootfs, DIGEST)
    text = str(raised.value)
    assert text.startswith(f"image layer {DIGEST}"), text
    for part in message:
        assert part in text, text
    assert scene.untouched()
    return text


# --- CVE-2025-4517: deep symlink chains ------------------------------------------------------


def deep_chain(steps: str = "abcdefghijklmnop") -> tuple[list[Member], str]:
    """Folders with 247-character names nested 16 deep, each reachable through a one-letter
    symlink, and at the bottom a link back up to the root: its real path is longer than
    realpath resolves (PATH_MAX), so a realpath-based check sees it as inside."""
    long_name, members, path = "d" * 247, list[Member](), ""
    for step in steps:
        members.append(folder(os.path.join(path, long_name)))
        members.append(symlink(os.path.join(path, step), long_name))
        path = os.path.join(path, long_name)
    bottom = os.path.join(*steps, "l" * 254)
    members.append(symlink(bottom, "../" * len(steps)))
    return members, bottom


def test_a_link_out_through_a_deep_symlink_chain_is_refused(scene: Scene) -> None:
    members, bottom = deep_chain()
    members += [symlink("escape", bottom + "/../victim"), file("escape/file")]

    text = refused(scene, members, "'escape'", "unsafe symlink", "leads out of the image")

    assert "pwned" not in text


def test_a_chain_of_more_than_40_links_is_refused(scene: Scene) -> None:
    links = [symlink(f"s{n}", f"s{n - 1}") for n in range(1, 50)]

    refused(scene, [folder("s0"), *links], "'s41'", "more than 40 symlinks")


def test_a_file_written_through_more_than_40_links_is_refused(scene: Scene) -> None:
    """Each link resolves in 31 steps or less; the file's path needs 61."""
    links = [symlink(f"s{n}", f"s{n - 1}") for n in range(1, 31)]
    members = [folder("s0"), *links, symlink("s0/up", ".."), file("s30/up/s30/file")]

    refused(scene, members, "'s30/up/s30/file'", "more than 40 symlinks")
    assert not (scene.rootfs / "s0" / "file").exists()


def test_a_deep_chain_that_stays_inside_is_unpacked(scene: Scene) -> None:
    members, bottom = deep_chain()
    members.append(file(bottom + "/at-the-root", b"inside"))

    apply_layer(layer(members), scene.rootfs, DIGEST)

    assert (scene.rootfs / "at-the-root").read_bytes() == b"inside"
    assert scene.untouched()


# --- CVE-2024-12718 and friends: symlinks and hardlinks out -----------------------------------


@pytest.mark.parametrize("target", ["../victim", "a/../../victim", "../rootfs/../victim"])
def test_a_relative_symlink_out_of_the_image_is_refused(scene: Scene, target: str) -> None:
    members = [folder("a"), symlink("out", target), folder("out", 0o777), file("out/file")]

    refused(scene, members, "'out'", "unsafe symlink")


def test_an_absolute_symlink_is_kept_inside_and_never_written_through(scene: Scene) -> None:
    members: list[Member] = [
        symlink("host", str(scene.victim)),
        file("host/file"),  # through the link: lands inside the rootfs
        folder("host", 0o777),  # replaces the link; chmods nothing outside
        file("host/new"),
    ]

    apply_layer(layer(members), scene.rootfs, DIGEST)

    assert scene.untouched()
    assert (scene.rootfs / "host").is_dir()
    assert not (scene.rootfs / "host").is_symlink()
    assert (scene.rootfs / scene.victim.relative_to("/") / "file").read_bytes() == b"pwned"


def test_a_file_over_a_symlink_replaces_the_link(scene: Scene) -> None:
    apply_layer(layer([file("target", b"kept"), symlink("f", "target")]), scene.rootfs, DIGEST)
    apply_layer(layer([file("f", b"new")]), scene.rootfs, DIGEST)

    assert (scene.rootfs / "target").read_bytes() == b"kept"
    assert not (scene.rootfs / "f").is_symlink()
    assert (scene.rootfs / "f").read_bytes() == b"new"


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([hardlink("h", "../victim/file")], "unsafe path"),
        ([hardlink("h", "/etc/passwd")], "unsafe path"),
        ([symlink("via", "/victim-folder"), hardlink("h", "via/file")], "unsafe hardlink"),
        ([folder("d"), hardlink("h", "d")], "unsafe hardlink"),
        ([hardlink("h", "missing")], "unsafe hardlink"),
    ],
    ids=["dotdot", "absolute", "through-a-symlink", "a-folder", "missing"],
)
def test_a_hardlink_to_anything_but_a_file_inside_is_refused(
    scene: Scene, members: list[Member], message: str
) -> None:
    refused(scene, members, "'h'", message)


def test_a_hardlink_to_a_file_inside_is_kept(scene: Scene) -> None:
    apply_layer(layer([file("a", b"same"), hardlink("b", "a")]), scene.rootfs, DIGEST)

    assert (scene.rootfs / "b").read_bytes() == b"same"
    assert (scene.rootfs / "a").stat().st_ino == (scene.rootfs / "b").stat().st_ino


# --- whiteouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".wh..", ".wh...", "./.wh..", "sub/.wh..."])
def test_a_whiteout_of_the_root_or_above_is_refused(scene: Scene, name: str) -> None:
    (scene.rootfs / "sub").mkdir()
    (scene.rootfs / "sub" / "kept").write_bytes(b"lower")

    refused(scene, [file(name, b"")], "unsafe whiteout")

    assert (scene.rootfs / "sub" / "kept").read_bytes() == b"lower"


def test_whiteouts_hide_lower_layers_only(scene: Scene) -> None:
    apply_layer(layer([file("etc/a"), file("opt/x"), file("opt/y")]), scene.rootfs, DIGEST)
    upper = [file("etc/.wh.a", b""), file("opt/.wh..wh..opq", b""), file("opt/z")]
    apply_layer(layer(upper), scene.rootfs, DIGEST)

    assert sorted(p.name for p in (scene.rootfs / "etc").iterdir()) == []
    assert sorted(p.name for p in (scene.rootfs / "opt").iterdir()) == ["z"]


def test_a_whiteout_through_a_symlink_stays_inside(scene: Scene) -> None:
    apply_layer(layer([symlink("v", str(scene.victim))]), scene.rootfs, DIGEST)

    apply_layer(layer([file("v/.wh.file", b""), file("v/.wh..wh..opq", b"")]), scene.rootfs, DIGEST)

    assert scene.untouched()


# --- names, kinds and modes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../victim/file", "'..' component"),
        ("a/../../victim/file", "'..' component"),
        ("/victim/file", "absolute"),
        ("//victim/file", "absolute"),
    ],
)
def test_a_name_out_of_the_image_is_refused(scene: Scene, name: str, message: str) -> None:
    refused(scene, [file(name)], repr(name), "unsafe path", message)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (tarfile.CHRTYPE, "device files"),
        (tarfile.BLKTYPE, "device files"),
        (tarfile.FIFOTYPE, "fifos"),
    ],
)
def test_device_nodes_and_fifos_are_refused(scene: Scene, kind: bytes, message: str) -> None:
    refused(scene, [special("dev/null", kind)], "'dev/null'", message, "not allowed")


def test_modes_lose_setuid_setgid_sticky_and_group_other_write(scene: Scene) -> None:
    members = [folder("tmp", 0o1777), file("tmp/tool", b"#!/bin/sh\n", 0o6777)]

    apply_layer(layer(members), scene.rootfs, DIGEST)

    assert stat.S_IMODE((scene.rootfs / "tmp" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((scene.rootfs / "tmp").stat().st_mode) == 0o755


# --- malformed archives ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "member", [file("a\0b" + "x" * 120), symlink("l", "a\0b" + "y" * 120)], ids=["name", "link"]
)
def test_a_nul_byte_in_a_pax_name_is_refused(scene: Scene, member: Member) -> None:
    refused(scene, [member], "embedded null byte")


def test_a_truncated_layer_is_refused(scene: Scene) -> None:
    whole = layer([file("a", b"x" * 5000), file("b", os.urandom(20000))])

    with pytest.raises(ConveyorError, match=f"image layer {DIGEST}.*(gzip tar|'b')"):
        apply_layer(whole[: len(whole) // 2], scene.rootfs, DIGEST)
    assert scene.untouched()


def test_a_bad_header_after_the_first_is_refused_not_read_as_the_end(scene: Scene) -> None:
    raw = bytearray(tar_bytes([file("a", b"x" * 10), file("b", b"y" * 10)]))
    second = raw.index(b"b\0")  # the second header's name field
    raw[second + 148 : second + 156] = b"garbage!"  # its checksum

    with pytest.raises(ConveyorError, match=f"image layer {DIGEST} has a bad tar header after"):
        apply_layer(gzip.compress(bytes(raw)), scene.rootfs, DIGEST)


# Named ids: gzip stamps the time into its header, so two xdist workers collecting a second
# apart would otherwise see different test ids (and refuse to run).
@pytest.mark.parametrize(
    "blob",
    [b"", b"not gzip at all", gzip.compress(b"not a tar" * 100, mtime=0)],
    ids=["empty", "not gzip", "gzip of no tar"],
)
def test_a_layer_that_is_no_gzip_tar_is_refused(scene: Scene, blob: bytes) -> None:
    with pytest.raises(ConveyorError, match=f"image layer {DIGEST}.*gzip tar"):
        apply_layer(blob, scene.rootfs, DIGEST)


# --- the whole release ----------------------------------------------------------------------------


def image_of(store: LayoutStore, layers: list[bytes]) -> str:
    config = model.canonical_json({"config": {"Cmd": ["true"]}, "rootfs": {"type": "layers"}})
    store.put_blob("shop", config)
    for blob in layers:
        store.put_blob("shop", blob)
    manifest = model.Manifest(
        config=model.Descriptor.of(model.CONFIG, config),
        layers=tuple(model.Descriptor.of(model.LAYER_TAR_GZIP, blob) for blob in layers),
    ).to_bytes()
    return store.put_manifest("shop", manifest, model.MANIFEST)


def test_a_link_a_later_layer_turns_outwards_refuses_the_release(tmp_path: Path) -> None:
    """Each link is inside when made; the second layer's `a/x -> ..` sends `a/L` out."""
    store = LayoutStore(tmp_path / "images")
    lower = layer([folder("a"), folder("a/x"), symlink("a/L", "x/../../victim")])
    upper = layer([file("a/.wh.x", b""), symlink("a/x", "..")])
    digest = image_of(store, [lower, upper])

    with pytest.raises(ConveyorError, match=r"image shop@sha256:\w+: cannot unpack 'a/L'"):
        unpack_release(store, "shop", digest, tmp_path / "releases")

    assert list((tmp_path / "releases").iterdir()) == []  # no release, no scratch left


def test_check_symlinks_accepts_links_that_stay_inside(scene: Scene) -> None:
    members = [folder("a/b"), symlink("a/up", ".."), symlink("a/b/l", "../up/a")]
    apply_layer(layer(members), scene.rootfs, DIGEST)

    check_symlinks(scene.rootfs, "image")


@pytest.mark.real
def test_conveyor_deploy_of_a_hostile_image_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    """The CVE-2025-4517 chain through the CLI: `escape` would lead to the folder holding
    the release being unpacked, and `escape/file` be written there."""
    project = make_project(tmp_path / "project", replicas=1, ready_timeout="10s")
    members, bottom = deep_chain()
    members += [symlink("escape", bottom + "/../.."), file("escape/file")]
    digest = image_of(LayoutStore(project.state_dir / "images"), [layer(members)])
    try:
        result = run_cli(["deploy", "staging", f"shop@{digest}"], project.directory)
    finally:
        with project.open_store() as store:
            envs.stop_environment(project, store, "staging")

    assert result.exit_code == 1, result.stdout + result.stderr
    assert "cannot unpack 'escape': unsafe symlink: it leads out of the image" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == b"pwned"]
    assert written == []
