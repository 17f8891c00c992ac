"""Conveyor's Python base image, built reproducibly from Debian 12's own packages.

The way distroless images are made: no container registry and no package manager run
inside the image. The packages below and their Depends (`debian_packages.resolve`) are
fetched with `apt-get download`, their files read from the .debs and written into one
deterministic layer (`layers.build_layer`: sorted, mtime 0, owner 0:0); a second layer
holds what a package's maintainer scripts or Debian's installer would have made:

- `/var/lib/dpkg/status`, each package's record with its Debian version (the SBOM reads
  it: `pkg:deb/debian/<name>@<version>`);
- `/usr/bin/python3` and `/usr/bin/python` -> python3.11 (python3-minimal's links);
- `/etc/ssl/certs/ca-certificates.crt`, the Mozilla bundle ca-certificates ships,
  concatenated in name order (what its script, `update-ca-certificates`, would write);
- `/etc/passwd`, `/etc/group` (root and nobody), `/etc/os-release`;
- the empty mount points a runtime needs: `/tmp`, `/proc`, `/dev`, `/data`.

There is no shell (`/bin/sh`) and no package manager. Documentation and manual pages are
left out, but not copyright files. The same apt lists give the same packages, the same
bytes and so the same digest; the digest changes when Debian publishes a new version
(a security update), which is what a rebuild is for.

Cached in a folder of the state folder (the caller's `cache_root`): apt's resolution per
state of its lists (`resolved-<key>.json`), the .debs (`debs/`), the built bases (`store/`,
an OCI layout) and, per resolved package set, the base's digest (`base-<key>.json`). A
warm call reads two small files and copies the base's blobs the store lacks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import posixpath
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.supply.oci import model
from conveyor.supply.oci.copy import copy_image
from conveyor.supply.oci.debian_packages import (
    DebianPackage,
    deb_entries,
    download,
    resolve_cached,
)
from conveyor.supply.oci.interpreter import LABEL_PYTHON
from conveyor.supply.oci.layers import LayerBlob, LayerEntry, build_layer
from conveyor.supply.oci.layout import LayoutStore
from conveyor.supply.oci.model import Descriptor, Manifest, canonical_json, digest_of
from conveyor.supply.oci.store import ImageStore

REPOSITORY = "conveyor/python"
PYTHON_VERSION = "3.11"
TAG = f"{PYTHON_VERSION}-bookworm"
# What the image is for; everything else comes from these packages' Depends.
ROOT_PACKAGES = (f"python{PYTHON_VERSION}", "ca-certificates")
STORE_CACHE_DIR = ".conveyor-cache/python-base"  # the cache's default place, in the store
CACHE_ENV = "CONVEYOR_BASE_CACHE"  # where the cache is, when not in the state folder
BASE_VERSION = "1"  # bump when the same packages should give a different base
MTIME = 0
STATUS_FILE = "/var/lib/dpkg/status"
CERT_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
MOUNT_POINTS = ("/tmp", "/proc", "/dev", "/data")  # noqa: S108 (an image's own /tmp)
_DOCS = ("/usr/share/doc", "/usr/share/man", "/usr/share/info", "/usr/share/lintian")
_CERTS = "/usr/share/ca-certificates/mozilla"
ENV = (
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "LANG=C.UTF-8",
    f"SSL_CERT_FILE={CERT_BUNDLE}",
    "PYTHONDONTWRITEBYTECODE=1",  # the root is read-only at run time
)


@dataclass(frozen=True)
class BaseBuild:
    """The base image in the store, and how it was obtained."""

    repository: str
    digest: str
    packages: tuple[str, ...]  # name=version
    cached: bool

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


def ensure_python_base(store: ImageStore, cache_root: Path, architecture: str) -> BaseBuild:
    """The base image for this host's apt lists, in `store`; built once into the cache
    (`cache_root/store`, an OCI layout) and copied from there. One builder at a time."""
    cache_root.mkdir(parents=True, exist_ok=True)
    with _locked(cache_root / "lock"):
        packages = resolve_cached(ROOT_PACKAGES, cache_root)
        pins = tuple(p.pin for p in packages)
        record = cache_root / f"base-{_key(packages, architecture)}.json"
        built = LayoutStore(cache_root / "store")
        digest = _cached_digest(record, built)
        cached = digest is not None
        if digest is None:
            debs = download(packages, cache_root / "debs")
            digest = build_base(built, packages, debs, architecture)
            record.write_text(json.dumps({"digest": digest, "packages": list(pins)}, indent=2))
    copy_image(built, REPOSITORY, digest, store, REPOSITORY, tags=(TAG,))
    return BaseBuild(REPOSITORY, digest, pins, cached=cached)


def cache_root_of(store_root: Path, environ: Mapping[str, str]) -> Path:
    """The base's cache folder: $CONVEYOR_BASE_CACHE, or one in the image store's folder
    (in the state folder)."""
    chosen = environ.get(CACHE_ENV, "").strip()
    return Path(chosen) if chosen else store_root / STORE_CACHE_DIR


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build_base(
    store: ImageStore, packages: list[DebianPackage], debs: list[Path], architecture: str
) -> str:
    """Build and store the base from these packages' .debs; returns its manifest digest."""
    layers = [
        build_layer(package_entries(debs), MTIME),
        build_layer(system_entries(packages, debs), MTIME),
    ]
    for layer in layers:
        store.put_blob(REPOSITORY, layer.data, layer.digest)
    config = canonical_json(image_config(layers, packages, architecture))
    store.put_blob(REPOSITORY, config)
    manifest = Manifest(
        config=Descriptor.of(model.CONFIG, config),
        layers=tuple(layer.descriptor() for layer in layers),
        annotations={model.ANNOTATION_CREATED: _created()},
    ).to_bytes()
    return store.put_manifest(REPOSITORY, manifest, model.MANIFEST, (TAG,))


def package_entries(debs: Iterable[Path]) -> list[LayerEntry]:
    """Every .deb's files (documentation left out); a path two packages ship must be
    the same in both (a directory, or the same bytes)."""
    by_path: dict[str, LayerEntry] = {}
    for deb in debs:
        for entry in deb_entries(deb):
            if _is_documentation(entry.path):
                continue
            known = by_path.setdefault(entry.path, entry)
            if known != entry and not (known.directory and entry.directory):
                raise ConveyorError(f"two packages ship different {entry.path} ({deb.name})")
    return list(by_path.values())


def system_entries(packages: list[DebianPackage], debs: list[Path]) -> list[LayerEntry]:
    """What maintainer scripts and the installer would have written (see the module)."""
    python = f"python{PYTHON_VERSION}"
    return [
        LayerEntry.of_bytes(STATUS_FILE, dpkg_status(packages)),
        LayerEntry.symlink("/usr/bin/python3", python),
        LayerEntry.symlink("/usr/bin/python", python),
        LayerEntry.of_bytes(CERT_BUNDLE, _cert_bundle(debs)),
        LayerEntry.of_bytes("/etc/passwd", b"root:x:0:0:root:/root:/nonexistent\n"
                            b"nobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n"),
        LayerEntry.of_bytes("/etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
        LayerEntry.of_bytes("/etc/os-release", _OS_RELEASE),
        *(LayerEntry.empty_directory(path) for path in MOUNT_POINTS),
    ]  # fmt: skip


_OS_RELEASE = (
    b'PRETTY_NAME="Conveyor Python base (Debian GNU/Linux 12)"\nNAME="Debian GNU/Linux"\n'
    b'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
)


def dpkg_status(packages: Iterable[DebianPackage]) -> bytes:
    """A dpkg status file: each package's record, marked installed, in name order."""
    stanzas = []
    for package in sorted(packages, key=lambda p: p.name):
        lines = package.stanza.splitlines()
        stanzas.append("\n".join([lines[0], "Status: install ok installed", *lines[1:]]))
    return ("\n\n".join(stanzas) + "\n").encode()


def image_config(
    layers: list[LayerBlob], packages: list[DebianPackage], architecture: str
) -> dict[str, Any]:
    names = " ".join(p.pin for p in packages)
    return {
        "created": _created(),
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": list(ENV),
            "Entrypoint": [f"/usr/bin/python{PYTHON_VERSION}"],
            "WorkingDir": "/",
            "Labels": {LABEL_PYTHON: PYTHON_VERSION},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": _created(), "created_by": f"conveyor image base: debian packages {names}"},
            {"created": _created(), "created_by": "conveyor image base: dpkg status, links, certs"},
        ],
    }


def _created() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(MTIME))


def _is_documentation(path: str) -> bool:
    inside = any(path == d or path.startswith(d + "/") for d in _DOCS)
    return inside and posixpath.basename(path) != "copyright" and path not in _DOCS


def _cert_bundle(debs: Iterable[Path]) -> bytes:
    certs = [
        entry
        for deb in debs
        if deb.name.startswith("ca-certificates_")
        for entry in deb_entries(deb)
        if entry.path.startswith(_CERTS + "/") and entry.path.endswith(".crt")
    ]
    if not certs:
        raise ConveyorError("the ca-certificates package holds no certificate")
    return b"".join(_ending_newline(e.data or b"") for e in sorted(certs, key=lambda e: e.path))


def _ending_newline(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"


def _key(packages: Iterable[DebianPackage], architecture: str) -> str:
    parts = {
        "base": BASE_VERSION,
        "architecture": architecture,
        "packages": [[p.name, p.version, p.sha256] for p in packages],
    }
    return digest_of(canonical_json(parts)).removeprefix("sha256:")[:32]


def _cached_digest(record: Path, store: ImageStore) -> str | None:
    try:
        digest = str(json.loads(record.read_text())["digest"])
        store.get_manifest(REPOSITORY, digest)
    except (OSError, ValueError, KeyError, TypeError, ConveyorError):
        return None
    return digest
