"""Attestations stored next to their image as OCI referrers (image-spec v1.1).

Each signed envelope becomes an artifact manifest: the empty config, one layer holding
the DSSE envelope JSON, an `artifactType` saying what it attests, and `subject` pointing
at the image manifest. It is stored by digest only; registries without the referrers API
get the tag fallback from the registry client, not from here.
"""

from __future__ import annotations

from typing import NamedTuple

from conveyor.supply.attest import (
    CYCLONEDX_BOM,
    SLSA_PROVENANCE,
    VULN_SCAN,
    Envelope,
    Statement,
)
from conveyor.supply.oci.model import (
    EMPTY_JSON,
    EMPTY_JSON_BYTES,
    MANIFEST,
    Descriptor,
    Manifest,
)
from conveyor.supply.oci.store import ImageStore

DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
PROVENANCE_ARTIFACT = "application/vnd.conveyor.provenance.v1+json"
SBOM_ARTIFACT = "application/vnd.conveyor.sbom.v1+json"
VULN_SCAN_ARTIFACT = "application/vnd.conveyor.vuln-scan.v1+json"

ARTIFACT_TYPE_OF_PREDICATE = {
    SLSA_PROVENANCE: PROVENANCE_ARTIFACT,
    CYCLONEDX_BOM: SBOM_ARTIFACT,
    VULN_SCAN: VULN_SCAN_ARTIFACT,
}


class StoredAttestation(NamedTuple):
    artifact_type: str
    envelope: bytes  # the DSSE envelope JSON as stored; verify before trusting it
    manifest_digest: str


def artifact_type_for(statement: Statement) -> str:
    """The referrer artifact type for a statement's predicate type."""
    return ARTIFACT_TYPE_OF_PREDICATE.get(statement.predicate_type, "application/vnd.in-toto+json")


def attach(
    store: ImageStore,
    repository: str,
    image_digest: str,
    envelope: Envelope | bytes,
    artifact_type: str,
) -> str:
    """Store `envelope` as a referrer of the image; returns the referrer manifest digest."""
    manifest_bytes, media_type = store.get_manifest(repository, image_digest)
    subject = Descriptor.of(media_type, manifest_bytes)
    envelope_bytes = envelope.to_bytes() if isinstance(envelope, Envelope) else envelope
    store.put_blob(repository, EMPTY_JSON_BYTES)
    store.put_blob(repository, envelope_bytes)
    referrer = Manifest(
        config=Descriptor.of(EMPTY_JSON, EMPTY_JSON_BYTES),
        layers=(Descriptor.of(DSSE_ENVELOPE, envelope_bytes),),
        subject=subject,
        artifact_type=artifact_type,
    )
    return store.put_manifest(repository, referrer.to_bytes(), MANIFEST)


def attestations(
    store: ImageStore, repository: str, image_digest: str, artifact_type: str | None = None
) -> list[StoredAttestation]:
    """The DSSE envelopes attached to the image (other referrers are skipped), unverified."""
    found: list[StoredAttestation] = []
    for descriptor in store.referrers(repository, image_digest, artifact_type):
        manifest_bytes, _ = store.get_manifest(repository, descriptor.digest)
        manifest = Manifest.from_bytes(manifest_bytes)
        kind = manifest.artifact_type or descriptor.artifact_type or manifest.config.media_type
        for layer in manifest.layers:
            if layer.media_type == DSSE_ENVELOPE:
                envelope = store.get_blob(repository, layer.digest)
                found.append(StoredAttestation(kind, envelope, descriptor.digest))
    return found
