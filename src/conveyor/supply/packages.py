"""The packages inside an image, read from its layers in order, with OCI whiteouts
honoured: Python distributions (`*.dist-info/METADATA` and `RECORD`) and Debian packages
(a dpkg status file, `var/lib/dpkg/status`, or distroless' `var/lib/dpkg/status.d/*`,
as Conveyor's Python base image writes). The SBOM (sbom.py) and the vulnerability scan
(imagescan.py) both start from this list."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import posixpath
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass

from packageurl import PackageURL
from packaging.metadata import RawMetadata, parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

_LONGEST_LICENSE_NAME = 100

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_DIST_INFO_FILES = frozenset({"METADATA", "RECORD"})
_DPKG_STATUS = "var/lib/dpkg/status"
_DPKG_STATUS_DIR = "var/lib/dpkg/status.d"
PYPI = "pypi"
DEB = "deb"
# Old distributions paste the whole licence text into `License`; that is not an identifier.


@dataclass(frozen=True)
class RecordedFile:
    """One row of a RECORD file: a path relative to site-packages, its sha256 and size."""

    path: str
    sha256: str | None
    size: int | None


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    location: str  # the dist-info directory inside the image, e.g. app/deps/x-1.0.dist-info
    metadata_sha256: str
    license: str | None = None
    summary: str | None = None
    home_page: str | None = None
    requires: tuple[str, ...] = ()  # canonical names from Requires-Dist, extras left out
    files: tuple[RecordedFile, ...] = ()
    ecosystem: str = PYPI  # or DEB
    architecture: str | None = None  # a Debian package's

    @property
    def purl(self) -> PackageURL:
        if self.ecosystem == DEB:
            qualifiers = {"arch": self.architecture} if self.architecture else None
            return PackageURL(
                type="deb",
                namespace="debian",
                name=self.name,
                version=self.version,
                qualifiers=qualifiers,
            )
        return PackageURL(type="pypi", name=canonicalize_name(self.name), version=self.version)


def packages_in_layers(layers: Iterable[bytes]) -> list[Package]:
    """The Python distributions installed in the image whose layers (tar or tar+gzip) are given."""
    tree: dict[str, bytes] = {}
    for layer in layers:
        _apply_layer(tree, layer)
    packages = (
        _package(path.removesuffix("/METADATA"), tree)
        for path in tree
        if posixpath.basename(path) == "METADATA"
    )
    found = [package for package in packages if package is not None]
    found += [package for path in tree if _is_dpkg_status(path) for package in _debs(path, tree)]
    return sorted(found, key=lambda p: (canonicalize_name(p.name), p.version, p.location))


def _apply_layer(tree: dict[str, bytes], layer: bytes) -> None:
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:*") as archive:
        members = archive.getmembers()
        # Whiteouts hide what lower layers hold, never what this layer adds: apply them first.
        for member in members:
            _apply_whiteout(tree, _normal(member.name))
        for member in members:
            path = _normal(member.name)
            if posixpath.basename(path).startswith(_WHITEOUT) or member.isdir():
                continue
            _remove(tree, path)  # a file or link replaces whatever was at its path
            if member.isfile() and (_is_dist_info_file(path) or _is_dpkg_status(path)):
                handle = archive.extractfile(member)
                if handle is not None:
                    with handle:
                        tree[path] = handle.read()


def _normal(name: str) -> str:
    path = posixpath.normpath("/" + name).lstrip("/")
    return "" if path == "." else path


def _apply_whiteout(tree: dict[str, bytes], path: str) -> None:
    directory, name = posixpath.split(path)
    if name == _OPAQUE:
        prefix = f"{directory}/" if directory else ""
        for hidden in [p for p in tree if p.startswith(prefix)]:
            del tree[hidden]
    elif name.startswith(_WHITEOUT):
        _remove(tree, posixpath.join(directory, name.removeprefix(_WHITEOUT)))


def _remove(tree: dict[str, bytes], path: str) -> None:
    tree.pop(path, None)
    for below in [p for p in tree if p.startswith(f"{path}/")]:
        del tree[below]


def _is_dist_info_file(path: str) -> bool:
    directory, name = posixpath.split(path)
    return name in _DIST_INFO_FILES and directory.endswith(".dist-info")


def _is_dpkg_status(path: str) -> bool:
    return path == _DPKG_STATUS or posixpath.dirname(path) == _DPKG_STATUS_DIR


def _debs(location: str, tree: dict[str, bytes]) -> list[Package]:
    """The installed packages a dpkg status file lists (continuation lines skipped)."""
    packages = []
    for stanza in tree[location].decode("utf-8", errors="replace").split("\n\n"):
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in stanza.splitlines())
            if key and not key.startswith((" ", "\t"))
        )
        if not fields.get("Package") or not fields.get("Version"):
            continue
        if "installed" not in fields.get("Status", "install ok installed").split():
            continue  # removed, or half-installed: not in the image
        packages.append(
            Package(
                name=fields["Package"],
                version=fields["Version"],
                location=location,
                metadata_sha256=hashlib.sha256(stanza.strip().encode()).hexdigest(),
                home_page=fields.get("Homepage"),
                ecosystem=DEB,
                architecture=fields.get("Architecture"),
            )
        )
    return packages


def _package(location: str, tree: dict[str, bytes]) -> Package | None:
    metadata = tree[f"{location}/METADATA"]
    raw, _ = parse_email(metadata)
    name, version = raw.get("name"), raw.get("version")
    if not name or not version:
        return None  # a broken dist-info names nothing we could report
    return Package(
        name=name,
        version=version,
        location=location,
        metadata_sha256=hashlib.sha256(metadata).hexdigest(),
        license=_license_of(raw),
        summary=raw.get("summary"),
        home_page=raw.get("home_page") or (raw.get("project_urls") or {}).get("Homepage"),
        requires=_requirements_of(raw),
        files=_record_of(tree.get(f"{location}/RECORD", b"")),
    )


def _license_of(raw: RawMetadata) -> str | None:
    if expression := raw.get("license_expression"):
        return expression
    text = (raw.get("license") or "").strip()
    if text and "\n" not in text and len(text) <= _LONGEST_LICENSE_NAME:
        return text
    for classifier in raw.get("classifiers") or []:
        if classifier.startswith("License ::"):
            return classifier.rsplit("::", 1)[1].strip()
    return None


def _requirements_of(raw: RawMetadata) -> tuple[str, ...]:
    names: set[str] = set()
    for line in raw.get("requires_dist") or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is None or "extra" not in str(requirement.marker):
            names.add(canonicalize_name(requirement.name))
    return tuple(sorted(names))


def _record_of(record: bytes) -> tuple[RecordedFile, ...]:
    files: list[RecordedFile] = []
    for row in csv.reader(io.StringIO(record.decode("utf-8", errors="replace"))):
        if not row or not row[0]:
            continue
        digest = row[1] if len(row) > 1 else ""
        size = row[2] if len(row) > 2 else ""
        files.append(
            RecordedFile(row[0], _record_sha256(digest), int(size) if size.isdigit() else None)
        )
    return tuple(files)


def _record_sha256(text: str) -> str | None:
    algorithm, _, value = text.partition("=")
    if algorithm != "sha256" or not value:
        return None
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex()
