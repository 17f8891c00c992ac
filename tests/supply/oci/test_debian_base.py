"""Conveyor's Python base image, built from Debian packages: reproducible, listed in the
SBOM with Debian versions, and made only of what the packages ship (plus what their
maintainer scripts would have written)."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from packageurl import PackageURL

from conveyor.errors import ConveyorError
from conveyor.supply.imagescan import image_packages
from conveyor.supply.oci.build import host_architecture
from conveyor.supply.oci.debian_base import (
    PYTHON_VERSION,
    REPOSITORY,
    BaseBuild,
    ensure_python_base,
)
from conveyor.supply.oci.debian_packages import apt_show, resolve
from conveyor.supply.oci.interpreter import LABEL_PYTHON
from conveyor.supply.oci.layout import LayoutStore
from conveyor.supply.oci.model import ImageRef, Manifest
from conveyor.supply.sbom import sbom_for_image


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[LayoutStore, BaseBuild]:
    from python_base import SHARED_CACHE

    store = LayoutStore(tmp_path_factory.mktemp("store"))
    return store, ensure_python_base(store, SHARED_CACHE, host_architecture())


def _tree(store: LayoutStore, digest: str) -> dict[str, tarfile.TarInfo]:
    manifest = Manifest.from_bytes(store.get_manifest(REPOSITORY, digest)[0])
    members: dict[str, tarfile.TarInfo] = {}
    for layer in manifest.layers:
        data = gzip.decompress(store.get_blob(REPOSITORY, layer.digest))
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            members |= {m.name.rstrip("/"): m for m in archive.getmembers()}
    return members


def test_two_builds_from_nothing_give_the_same_digest(
    shared: tuple[LayoutStore, BaseBuild], tmp_path: Path
) -> None:
    from python_base import SHARED_CACHE

    digests = []
    for name in ("one", "two"):
        cache = tmp_path / name / "cache"
        # The .debs are the build's inputs (fetched by apt, SHA256-checked): copying them
        # keeps the test off the network; the resolution and the base are built again.
        shutil.copytree(SHARED_CACHE / "debs", cache / "debs")
        built = ensure_python_base(LayoutStore(tmp_path / name / "store"), cache, "amd64")
        assert not built.cached
        digests.append(built.digest)
    assert digests[0] == digests[1]
    if host_architecture() == "amd64":
        assert digests[0] == shared[1].digest


def test_a_second_call_is_served_from_the_cache(shared: tuple[LayoutStore, BaseBuild]) -> None:
    from python_base import SHARED_CACHE

    store, first = shared
    again = ensure_python_base(store, SHARED_CACHE, host_architecture())
    assert again.cached
    assert again.digest == first.digest


def test_every_package_is_in_the_sbom_with_its_debian_version(
    shared: tuple[LayoutStore, BaseBuild],
) -> None:
    store, built = shared
    packages = {p.name: p for p in image_packages(store, REPOSITORY, built.digest)}
    expected = {pin.partition("=")[0]: pin.partition("=")[2] for pin in built.packages}
    assert {name for name, p in packages.items() if p.ecosystem == "deb"} == set(expected)
    libc = packages["libc6"]
    assert libc.version == apt_show(["libc6"])["libc6"].version == expected["libc6"]
    purl = PackageURL.from_string(str(libc.purl))
    assert (purl.type, purl.namespace, purl.name) == ("deb", "debian", "libc6")
    assert purl.version == libc.version
    assert f"python{PYTHON_VERSION}" in packages


def test_the_image_holds_an_interpreter_and_no_shell(
    shared: tuple[LayoutStore, BaseBuild],
) -> None:
    store, built = shared
    tree = _tree(store, built.digest)
    assert tree[f"usr/bin/python{PYTHON_VERSION}"].isfile()
    assert tree["usr/bin/python3"].linkname == tree["usr/bin/python"].linkname
    assert "bin/sh" not in tree and "usr/bin/sh" not in tree
    assert "usr/bin/apt-get" not in tree and "usr/bin/dpkg" not in tree
    assert tree["etc/ssl/certs/ca-certificates.crt"].size > 100_000
    assert not any(n.startswith("usr/share/man/") for n in tree)
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in tree.values())
    for mount_point in ("tmp", "proc", "dev", "data"):
        assert tree[mount_point].isdir()


def test_its_config_names_its_interpreter_version(shared: tuple[LayoutStore, BaseBuild]) -> None:
    store, built = shared
    manifest = Manifest.from_bytes(store.get_manifest(REPOSITORY, built.digest)[0])
    config = json.loads(store.get_blob(REPOSITORY, manifest.config.digest))
    assert config["config"]["Labels"][LABEL_PYTHON] == PYTHON_VERSION
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in config["config"]["Env"]


def test_an_unknown_package_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConveyorError, match="apt knows no package no-such-package-here") as raised:
        resolve(["python3.11", "no-such-package-here"])
    assert "apt-get update" in str(raised.value.hint)


def test_a_machine_without_apt_gets_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-cache there
    with pytest.raises(ConveyorError, match="cannot run apt-cache for the Python base image"):
        resolve(["python3.11"])


def test_the_cyclonedx_sbom_names_each_debian_package_by_its_purl(
    shared: tuple[LayoutStore, BaseBuild],
) -> None:
    store, built = shared
    packages = image_packages(store, REPOSITORY, built.digest)
    ref = ImageRef(name=REPOSITORY, digest=built.digest)
    bom = json.loads(sbom_for_image(ref, built.digest, packages, created=datetime.now(UTC)))
    purls = {c["name"]: c["purl"] for c in bom["components"]}
    assert len(purls) == len(built.packages)
    version = dict(pin.split("=", 1) for pin in built.packages)["python3.11"]
    assert PackageURL.from_string(purls["python3.11"]).version == version
