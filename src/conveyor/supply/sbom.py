"""The software bill of materials of an image: the Python distributions its layers install.

Layers are read in order as one overlay filesystem (OCI whiteouts honoured) and every
`*.dist-info/METADATA` still visible at the top is a package, wherever it lives. The SBOM
is CycloneDX 1.6 JSON; the serial number derives from the manifest digest and the
timestamp is the image's creation time, so the same image always gives the same bytes.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import posixpath
import tarfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.exception.model import InvalidUriException
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.component_evidence import ComponentEvidence, Occurrence
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.metadata import RawMetadata, parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from conveyor import __version__
from conveyor.supply.oci.model import ImageRef

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_DIST_INFO_FILES = frozenset({"METADATA", "RECORD"})
# Old distributions paste the whole licence text into `License`; that is not an identifier.
_LONGEST_LICENSE_NAME = 100
_SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://conveyor.dev/sbom")


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

    @property
    def purl(self) -> PackageURL:
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
            if member.isfile() and _is_dist_info_file(path):
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


def sbom_for_image(
    image_ref: ImageRef, manifest_digest: str, packages: Sequence[Package], *, created: datetime
) -> bytes:
    """CycloneDX 1.6 JSON for the image; `created` is its (SOURCE_DATE_EPOCH) build time."""
    image = _image_component(image_ref, manifest_digest)
    refs = _bom_refs(packages)
    components = [_package_component(package, refs[package.location]) for package in packages]
    bom = Bom(
        components=components,
        serial_number=uuid.uuid5(_SERIAL_NAMESPACE, manifest_digest),
        metadata=BomMetaData(component=image, timestamp=created),
    )
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="conveyor", version=__version__)
    )
    bom.register_dependency(image, components)
    by_name: dict[str, list[Component]] = {}
    for package, component in zip(packages, components, strict=True):
        by_name.setdefault(canonicalize_name(package.name), []).append(component)
    for package, component in zip(packages, components, strict=True):
        needed = [dep for name in package.requires for dep in by_name.get(name, [])]
        bom.register_dependency(component, needed)
    return JsonV1Dot6(bom).output_as_string(indent=None).encode()


def _image_component(image_ref: ImageRef, manifest_digest: str) -> Component:
    name = posixpath.basename(image_ref.name)
    return Component(
        type=ComponentType.CONTAINER,
        name=image_ref.name,
        version=image_ref.tag or manifest_digest,
        bom_ref=f"image:{image_ref.name}@{manifest_digest}",
        hashes=[
            HashType(alg=HashAlgorithm.SHA_256, content=manifest_digest.removeprefix("sha256:"))
        ],
        purl=PackageURL(type="oci", name=name, version=manifest_digest),
    )


def _bom_refs(packages: Sequence[Package]) -> dict[str, str]:
    """The purl names a package unless the same release is installed twice in the image."""
    counts: dict[str, int] = {}
    for package in packages:
        counts[str(package.purl)] = counts.get(str(package.purl), 0) + 1
    return {
        p.location: str(p.purl) if counts[str(p.purl)] == 1 else f"{p.purl}#{p.location}"
        for p in packages
    }


def _package_component(package: Package, bom_ref: str) -> Component:
    licenses = [LicenseFactory().make_from_string(package.license)] if package.license else []
    return Component(
        type=ComponentType.LIBRARY,
        name=package.name,
        version=package.version,
        bom_ref=bom_ref,
        purl=package.purl,
        description=package.summary,
        licenses=licenses,
        # The installed METADATA is what identifies this distribution inside the image.
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=package.metadata_sha256)],
        external_references=_website(package.home_page),
        evidence=ComponentEvidence(occurrences=[Occurrence(location=f"/{package.location}")]),
        properties=[Property(name="conveyor:recorded-files", value=str(len(package.files)))],
    )


def _website(url: str | None) -> list[ExternalReference]:
    if not url:
        return []
    try:
        return [ExternalReference(type=ExternalReferenceType.WEBSITE, url=XsUri(url))]
    except InvalidUriException:
        return []  # a malformed home page is the package's problem, not the SBOM's
