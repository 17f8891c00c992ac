"""One image's evidence for a page: its tags, the packages of its SBOM, its scan result,
its attestations and the admission policy's verdict. Evidence is read as stored; the
verdict is what verifies it (signatures, subject, integrity)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.service.images import (
    find_image,
    image_store,
    images_config,
    list_images,
    resolve,
    verify_image,
)
from conveyor.service.project import Project
from conveyor.supply.attest import CYCLONEDX_BOM, SLSA_PROVENANCE, VULN_SCAN, Envelope, Statement
from conveyor.supply.oci.model import ImageRef
from conveyor.supply.policy import AdmissionDecision
from conveyor.supply.referrers import attestations


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    purl: str


@dataclass(frozen=True)
class AttestationSummary:
    artifact_type: str
    predicate_type: str  # "" when the envelope does not read as a statement
    manifest_digest: str
    key_ids: list[str]


@dataclass(frozen=True)
class ImageDetail:
    repository: str
    digest: str
    tags: list[str]
    created: str
    revision: str
    size: int
    packages: list[Package] = field(default_factory=list)
    scan: dict[str, Any] | None = None  # the scan statement's predicate
    provenance: dict[str, Any] | None = None  # its externalParameters (repository, commit)
    attestations: list[AttestationSummary] = field(default_factory=list)
    verdict: AdmissionDecision | None = None
    verdict_unavailable: str | None = None  # why there is no verdict (no policy)


def image_detail(project: Project, reference: str) -> ImageDetail:
    store = image_store(project)
    ref = find_image(store, reference)
    digest = resolve(store, ref)
    summary = next(
        (i for i in list_images(store) if i.repository == ref.name and i.digest == digest), None
    )
    statements: list[Statement] = []
    summaries: list[AttestationSummary] = []
    for stored in attestations(store, ref.name, digest):
        predicate_type = ""
        key_ids: list[str] = []
        try:
            envelope = Envelope.from_bytes(stored.envelope)
            key_ids = [s.keyid for s in envelope.signatures]
            statement = Statement.from_bytes(envelope.payload)
            statements.append(statement)
            predicate_type = statement.predicate_type
        except ConveyorError:
            pass  # shown without its type; the verdict says why it does not count
        summaries.append(
            AttestationSummary(
                stored.artifact_type, predicate_type, stored.manifest_digest, key_ids
            )
        )
    verdict, unavailable = _verdict(project, ImageRef(name=ref.name, digest=digest))
    return ImageDetail(
        repository=ref.name,
        digest=digest,
        tags=summary.tags if summary else [],
        created=summary.created if summary else "",
        revision=summary.revision if summary else "",
        size=summary.size if summary else 0,
        packages=_packages(statements),
        scan=_predicate(statements, VULN_SCAN),
        provenance=_provenance(statements),
        attestations=summaries,
        verdict=verdict,
        verdict_unavailable=unavailable,
    )


def _predicate(statements: list[Statement], predicate_type: str) -> dict[str, Any] | None:
    found = [s.predicate for s in statements if s.predicate_type == predicate_type]
    return found[-1] if found else None


def _packages(statements: list[Statement]) -> list[Package]:
    bom = _predicate(statements, CYCLONEDX_BOM) or {}
    components = bom.get("components") or []
    return sorted(
        (
            Package(str(c.get("name", "")), str(c.get("version", "")), str(c.get("purl", "")))
            for c in components
            if isinstance(c, dict)
        ),
        key=lambda p: (p.name, p.version),
    )


def _provenance(statements: list[Statement]) -> dict[str, Any] | None:
    predicate = _predicate(statements, SLSA_PROVENANCE)
    if predicate is None:
        return None
    build = predicate.get("buildDefinition") or {}
    parameters = build.get("externalParameters") if isinstance(build, dict) else None
    return parameters if isinstance(parameters, dict) else {}


def _verdict(project: Project, ref: ImageRef) -> tuple[AdmissionDecision | None, str | None]:
    try:
        config = images_config(project)
        return verify_image(project, ref, config)[1], None
    except ConveyorError as error:
        return None, error.message
