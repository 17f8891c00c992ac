"""What an image carries beside its layers, read back for people: its SBOM's packages, its
vulnerability scan, its attestations, and the admission policy's verdict. Shared by the
API's image page and the diff between two releases (service/release_diff.py).

Attestations are read as stored; `admission` is the verdict of the policy, which verifies
their signatures (None when conveyor.yml has no admission policy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.service.images import image_store, images_config, verify_image
from conveyor.service.project import Project
from conveyor.supply.attest import CYCLONEDX_BOM, VULN_SCAN, Envelope, Statement
from conveyor.supply.oci.model import ImageRef
from conveyor.supply.referrers import StoredAttestation, attestations


@dataclass(frozen=True)
class SbomPackage:
    name: str
    version: str
    purl: str | None


@dataclass(frozen=True)
class ScanResult:
    passed: bool
    counts: dict[str, int]  # findings by severity
    findings: list[str]  # advisory ids
    scanner: str
    scanned_at: str
    database: str


@dataclass(frozen=True)
class AttestationView:
    artifact_type: str
    referrer: str  # the referrer manifest's digest
    predicate_type: str | None
    signed_by: list[str]  # key ids


@dataclass(frozen=True)
class Admission:
    admitted: bool
    checks: list[dict[str, Any]]


@dataclass(frozen=True)
class ImageEvidence:
    repository: str
    digest: str
    packages: list[SbomPackage] = field(default_factory=list)
    scan: ScanResult | None = None
    attestations: list[AttestationView] = field(default_factory=list)
    admission: Admission | None = None


def image_evidence(project: Project, repository: str, digest: str) -> ImageEvidence:
    stored = attestations(image_store(project), repository, digest)
    statements = [(item, _statement(item)) for item in stored]
    return ImageEvidence(
        repository=repository,
        digest=digest,
        packages=_packages(statements),
        scan=_scan(statements),
        attestations=[_view(item, statement) for item, statement in statements],
        admission=_admission(project, repository, digest),
    )


def _statement(stored: StoredAttestation) -> Statement | None:
    try:
        return Statement.from_bytes(Envelope.from_bytes(stored.envelope).payload)
    except ConveyorError:
        return None  # malformed: shown as an attestation, and admission says why


def _view(stored: StoredAttestation, statement: Statement | None) -> AttestationView:
    signed_by = [s.get("keyid", "") for s in json.loads(stored.envelope).get("signatures", [])]
    return AttestationView(
        artifact_type=stored.artifact_type,
        referrer=stored.manifest_digest,
        predicate_type=statement.predicate_type if statement else None,
        signed_by=signed_by,
    )


def _packages(statements: list[tuple[StoredAttestation, Statement | None]]) -> list[SbomPackage]:
    found: dict[tuple[str, str], SbomPackage] = {}
    for _, statement in statements:
        if statement is None or statement.predicate_type != CYCLONEDX_BOM:
            continue
        for component in statement.predicate.get("components") or []:
            if component.get("type") == "library":
                package = SbomPackage(
                    str(component.get("name", "")),
                    str(component.get("version", "")),
                    component.get("purl"),
                )
                found[(package.name, package.version)] = package
    return sorted(found.values(), key=lambda p: (p.name.lower(), p.version))


def _scan(statements: list[tuple[StoredAttestation, Statement | None]]) -> ScanResult | None:
    scans = [s for _, s in statements if s is not None and s.predicate_type == VULN_SCAN]
    if not scans:
        return None
    newest = max(scans, key=lambda s: str(s.predicate.get("scannedAt", "")))
    predicate = newest.predicate
    return ScanResult(
        passed=predicate.get("passed") is True,
        counts={str(k): int(v) for k, v in (predicate.get("counts") or {}).items()},
        findings=sorted(str(i) for i in predicate.get("findings") or []),
        scanner=str((predicate.get("scanner") or {}).get("name", "")),
        scanned_at=str(predicate.get("scannedAt", "")),
        database=str((predicate.get("database") or {}).get("digest", "")),
    )


def _admission(project: Project, repository: str, digest: str) -> Admission | None:
    config = images_config(project)
    if config.admission is None:
        return None
    _, decision = verify_image(project, ImageRef(name=repository, digest=digest), config)
    checks = [
        {"name": str(check.name), "passed": check.passed, "detail": check.detail}
        for check in decision.checks
    ]
    return Admission(decision.admitted, checks)
