from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.supply.attest import (
    BUILD_TYPE,
    BUILDER_ID,
    CYCLONEDX_BOM,
    PAYLOAD_TYPE,
    SLSA_PROVENANCE,
    VULN_SCAN,
    AttestationError,
    BuildFacts,
    Envelope,
    ProvenanceSource,
    Refusal,
    ScanSummary,
    Signature,
    Statement,
    pae,
    provenance_statement,
    sbom_statement,
    scan_statement,
    sign_statement,
    verify_envelope,
)
from conveyor.supply.keys import SigningKey, TrustedKeys, generate_keypair, load_private
from conveyor.supply.oci.model import EMPTY_JSON, MANIFEST, Descriptor, Manifest
from conveyor.supply.referrers import (
    DSSE_ENVELOPE,
    PROVENANCE_ARTIFACT,
    SBOM_ARTIFACT,
    artifact_type_for,
    attach,
    attestations,
)
from supply.memory_store import MemoryStore, put_image

IMAGE = "sha256:" + "ab" * 32
BASE = "sha256:" + "cd" * 32
DB = "sha256:" + "ef" * 32
STARTED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FINISHED = datetime(2024, 5, 1, 12, 3, tzinfo=UTC)


@pytest.fixture
def signer(tmp_path: Path) -> SigningKey:
    return load_private(generate_keypair(tmp_path, "release").private_path)


@pytest.fixture
def trusted(signer: SigningKey) -> TrustedKeys:
    return TrustedKeys([signer.public])


def facts(**changes: object) -> BuildFacts:
    base = BuildFacts(
        repository="https://git.example.org/acme/shop",
        branch="main",
        commit="0123456789abcdef0123456789abcdef01234567",
        pipeline="ci",
        job="build-image",
        run_id="42",
        started_on=STARTED,
        finished_on=FINISHED,
        base_image="registry.example.org/python:3.12-slim",
        base_image_digest=BASE,
        vuln_db_digest=DB,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def statement() -> Statement:
    return provenance_statement("shop", IMAGE, facts())


def refusal_of(envelope: Envelope | bytes, trusted: TrustedKeys) -> AttestationError:
    with pytest.raises(AttestationError) as caught:
        verify_envelope(envelope, trusted)
    return caught.value


def test_pae_matches_the_dsse_specification_example() -> None:
    encoded = pae("http://example.com/HelloWorld", b"hello world")
    assert encoded == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_sign_then_verify_returns_the_statement(signer: SigningKey, trusted: TrustedKeys) -> None:
    envelope = sign_statement(statement(), signer)
    stored = envelope.to_bytes()

    raw = json.loads(stored)
    assert raw["payloadType"] == PAYLOAD_TYPE
    assert raw["signatures"][0]["keyid"] == signer.key_id
    assert (
        json.loads(base64.b64decode(raw["payload"]))["_type"] == "https://in-toto.io/Statement/v1"
    )
    assert verify_envelope(stored, trusted) == statement()


def test_a_changed_payload_byte_is_refused_as_tampered(
    signer: SigningKey, trusted: TrustedKeys
) -> None:
    envelope = sign_statement(statement(), signer)
    payload = bytearray(envelope.payload)
    payload[payload.index(b"main")] = ord("n")
    tampered = dataclasses.replace(envelope, payload=bytes(payload))

    error = refusal_of(tampered, trusted)
    assert error.reason is Refusal.TAMPERED
    assert "tampered" in error.message


def test_a_signature_from_another_envelope_is_refused_as_tampered(
    signer: SigningKey, trusted: TrustedKeys
) -> None:
    envelope = sign_statement(statement(), signer)
    other = sign_statement(provenance_statement("shop", IMAGE, facts(branch="dev")), signer)
    swapped = dataclasses.replace(envelope, signatures=other.signatures)

    assert refusal_of(swapped, trusted).reason is Refusal.TAMPERED


def test_a_key_that_is_not_pinned_is_refused(tmp_path: Path, trusted: TrustedKeys) -> None:
    stranger = load_private(generate_keypair(tmp_path / "other", "stranger").private_path)
    error = refusal_of(sign_statement(statement(), stranger), trusted)
    assert error.reason is Refusal.UNKNOWN_KEY
    assert stranger.key_id[:16] in error.message


def test_a_wrong_payload_type_is_refused(signer: SigningKey, trusted: TrustedKeys) -> None:
    envelope = dataclasses.replace(sign_statement(statement(), signer), payload_type="text/plain")
    error = refusal_of(envelope, trusted)
    assert error.reason is Refusal.WRONG_PAYLOAD_TYPE
    assert "text/plain" in error.message


def test_an_envelope_without_signatures_is_refused_as_unsigned(trusted: TrustedKeys) -> None:
    envelope = Envelope(PAYLOAD_TYPE, statement().to_bytes())
    assert refusal_of(envelope.to_bytes(), trusted).reason is Refusal.UNSIGNED


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"payloadType": "x"}', b'{"payloadType": "x", "payload": "%%%"}'],
)
def test_malformed_envelopes_are_refused(data: bytes, trusted: TrustedKeys) -> None:
    assert refusal_of(data, trusted).reason is Refusal.MALFORMED


def test_a_signed_payload_that_is_not_a_statement_is_refused(
    signer: SigningKey, trusted: TrustedKeys
) -> None:
    payload = b'{"_type": "https://example.org/other"}'
    signature = Signature(signer.key_id, signer.sign(pae(PAYLOAD_TYPE, payload)))
    error = refusal_of(Envelope(PAYLOAD_TYPE, payload, (signature,)), trusted)
    assert error.reason is Refusal.MALFORMED


def test_a_signature_without_keyid_is_checked_against_every_pinned_key(
    signer: SigningKey, trusted: TrustedKeys
) -> None:
    envelope = sign_statement(statement(), signer)
    anonymous = Signature("", envelope.signatures[0].sig)
    assert verify_envelope(dataclasses.replace(envelope, signatures=(anonymous,)), trusted)


def test_provenance_records_source_build_and_dependencies() -> None:
    made = statement().to_json()

    assert made["subject"] == [{"name": "shop", "digest": {"sha256": "ab" * 32}}]
    assert made["predicateType"] == SLSA_PROVENANCE
    definition = made["predicate"]["buildDefinition"]
    assert definition["buildType"] == BUILD_TYPE
    assert definition["externalParameters"] == {
        "repository": "https://git.example.org/acme/shop",
        "ref": "refs/heads/main",
        "branch": "main",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "pipeline": "ci",
        "job": "build-image",
    }
    source, base, db = definition["resolvedDependencies"]
    assert source == {
        "uri": "git+https://git.example.org/acme/shop@0123456789abcdef0123456789abcdef01234567",
        "digest": {"gitCommit": "0123456789abcdef0123456789abcdef01234567"},
    }
    assert base["digest"] == {"sha256": "cd" * 32}
    assert base["uri"] == "oci://registry.example.org/python:3.12-slim"
    assert db == {"name": "vulnerability-db", "digest": {"sha256": "ef" * 32}}
    run = made["predicate"]["runDetails"]
    assert run["builder"]["id"] == BUILDER_ID
    assert run["builder"]["version"]["conveyor"]
    assert run["metadata"] == {
        "invocationId": "42",
        "startedOn": "2024-05-01T12:00:00Z",
        "finishedOn": "2024-05-01T12:03:00Z",
    }


def test_provenance_source_reads_the_branch_from_the_ref_when_absent() -> None:
    made = provenance_statement("shop", IMAGE, facts(branch=None, ref="refs/heads/release/1.2"))
    source = ProvenanceSource.from_statement(made)
    assert (source.repository, source.branch) == (
        "https://git.example.org/acme/shop",
        "release/1.2",
    )


def test_scan_predicate_round_trips() -> None:
    summary = ScanSummary(
        scanner="conveyor-osv",
        scanner_version="1",
        db_digest=DB,
        db_imported_at=STARTED,
        scanned_at=FINISHED,
        passed=False,
        counts={"high": 1, "low": 2},
        finding_ids=("PYSEC-2024-1", "GHSA-xxxx-yyyy-zzzz"),
        db_newest_advisory=STARTED - timedelta(days=700),
    )
    made = scan_statement("shop", IMAGE, summary)

    assert made.predicate_type == VULN_SCAN
    assert made.predicate["database"] == {
        "digest": DB,
        "importedAt": "2024-05-01T12:00:00Z",
        "newestAdvisory": "2022-06-01T12:00:00Z",
    }
    parsed = ScanSummary.from_predicate(made.predicate)
    assert parsed == dataclasses.replace(summary, finding_ids=tuple(sorted(summary.finding_ids)))


def test_a_scan_predicate_signed_before_advisories_were_dated_still_reads() -> None:
    predicate = {
        "scanner": {"name": "conveyor-osv", "version": "1"},
        "database": {"digest": DB, "importedAt": "2024-05-01T12:00:00Z"},
        "scannedAt": "2024-05-01T12:00:00Z",
        "passed": True,
        "counts": {},
        "findings": [],
    }

    assert ScanSummary.from_predicate(predicate).db_newest_advisory is None


def test_a_scan_predicate_missing_its_database_is_malformed() -> None:
    with pytest.raises(AttestationError) as caught:
        ScanSummary.from_predicate({"scanner": {"name": "x", "version": "1"}, "passed": True})
    assert caught.value.reason is Refusal.MALFORMED


def test_sbom_statement_carries_the_bom_as_its_predicate() -> None:
    bom = b'{"bomFormat": "CycloneDX", "specVersion": "1.6"}'
    made = sbom_statement("shop", IMAGE, bom)
    assert made.predicate_type == CYCLONEDX_BOM
    assert made.predicate == {"bomFormat": "CycloneDX", "specVersion": "1.6"}
    assert made.covers(IMAGE)
    assert not made.covers(BASE)


# Referrers: envelopes stored next to the image they attest.


def test_attached_envelopes_are_referrers_of_the_image(signer: SigningKey) -> None:
    store = MemoryStore()
    image = put_image(store, "shop")
    provenance = sign_statement(provenance_statement("shop", image, facts()), signer)
    sbom = sign_statement(sbom_statement("shop", image, b'{"bomFormat": "CycloneDX"}'), signer)

    first = attach(store, "shop", image, provenance, artifact_type_for(statement()))
    attach(store, "shop", image, sbom.to_bytes(), SBOM_ARTIFACT)

    manifest_bytes, media_type = store.get_manifest("shop", first)
    manifest = Manifest.from_bytes(manifest_bytes)
    assert media_type == MANIFEST
    assert manifest.artifact_type == PROVENANCE_ARTIFACT
    assert manifest.subject is not None
    assert manifest.subject.digest == image
    assert manifest.subject.size == len(store.get_manifest("shop", image)[0])
    assert manifest.config.media_type == EMPTY_JSON
    assert store.get_blob("shop", manifest.config.digest) == b"{}"
    assert [layer.media_type for layer in manifest.layers] == [DSSE_ENVELOPE]
    assert store.tags("shop") == ["abc123"]  # referrers are stored by digest only
    found = {kind: envelope for kind, envelope, _ in attestations(store, "shop", image)}
    assert found == {PROVENANCE_ARTIFACT: provenance.to_bytes(), SBOM_ARTIFACT: sbom.to_bytes()}
    only_sbom = attestations(store, "shop", image, SBOM_ARTIFACT)
    assert [item.artifact_type for item in only_sbom] == [SBOM_ARTIFACT]


def test_referrers_that_are_not_envelopes_and_other_images_are_left_out(
    signer: SigningKey,
) -> None:
    store = MemoryStore()
    image = put_image(store, "shop")
    other = put_image(store, "shop", tag="def456")
    attach(store, "shop", other, sign_statement(statement(), signer), PROVENANCE_ARTIFACT)
    note = b"a signature in some other format"
    store.put_blob("shop", note)
    store.put_blob("shop", b"{}")
    foreign = Manifest(
        config=Descriptor.of(EMPTY_JSON, b"{}"),
        layers=(Descriptor.of("application/vnd.example.note", note),),
        subject=Descriptor.of(MANIFEST, store.get_manifest("shop", image)[0]),
        artifact_type="application/vnd.example.note",
    )
    store.put_manifest("shop", foreign.to_bytes(), MANIFEST)

    assert attestations(store, "shop", image) == []
    assert len(attestations(store, "shop", other)) == 1
