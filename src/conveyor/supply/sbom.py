"""The software bill of materials of an image: the Python distributions its layers install.

Layers are read in order as one overlay filesystem (OCI whiteouts honoured) and every
`*.dist-info/METADATA` still visible at the top is a package, wherever it lives. The SBOM
is CycloneDX 1.6 JSON; the serial number derives from the manifest digest and the
timestamp is the image's creation time, so the same image always gives the same bytes.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Sequence
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
from packaging.utils import canonicalize_name

from conveyor import __version__
from conveyor.supply.oci.model import ImageRef
from conveyor.supply.packages import Package, RecordedFile, packages_in_layers

__all__ = ["Package", "RecordedFile", "packages_in_layers", "sbom_for_image"]

_SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://conveyor.dev/sbom")


def sbom_for_image(
    image_ref: ImageRef, manifest_digest: str, packages: Sequence[Package], *, created: datetime
) -> bytes:
    """CycloneDX 1.6 JSON for the image; `created` is its (SOURCE_DATE_EPOCH) build time."""
    image = _image_component(image_ref, manifest_digest)
    refs = _bom_refs(packages)
    components = [
        _package_component(package, refs[package.location, package.name]) for package in packages
    ]
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


def _bom_refs(packages: Sequence[Package]) -> dict[tuple[str, str], str]:
    """The purl names a package unless the same release is installed twice in the image."""
    counts: dict[str, int] = {}
    for package in packages:
        counts[str(package.purl)] = counts.get(str(package.purl), 0) + 1
    return {
        (p.location, p.name): str(p.purl) if counts[str(p.purl)] == 1 else f"{p.purl}#{p.location}"
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
