"""Signed attestations: in-toto Statements v1 in DSSE envelopes, signed with ed25519.

The signature covers the DSSE pre-authentication encoding (PAE) of the payload type and
the payload, so neither can change without the signature failing. Predicates: SLSA
provenance v1, the CycloneDX SBOM, and conveyor's vulnerability scan summary.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from conveyor import __version__
from conveyor.errors import ConveyorError
from conveyor.supply.keys import PublicKey, SigningKey, TrustedKeys
from conveyor.supply.oci.model import canonical_json, is_digest

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
CYCLONEDX_BOM = "https://cyclonedx.org/bom"
VULN_SCAN = "https://conveyor.dev/attestation/vuln-scan/v1"
BUILD_TYPE = "https://conveyor.dev/build/v1"
BUILDER_ID = "https://conveyor.dev/builder/local/v1"


class Refusal(StrEnum):
    """Why an envelope was refused; each names one thing that is wrong with it."""

    MALFORMED = "malformed"
    WRONG_PAYLOAD_TYPE = "wrong payload type"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown key"
    TAMPERED = "tampered"


class AttestationError(ConveyorError):
    def __init__(self, reason: Refusal, message: str, hint: str | None = None) -> None:
        super().__init__(f"attestation refused ({reason}): {message}", hint)
        self.reason = reason


@dataclass(frozen=True)
class Subject:
    name: str
    sha256: str  # hex, without the `sha256:` prefix (in-toto DigestSet)

    @classmethod
    def of_image(cls, name: str, image_digest: str) -> Subject:
        if not is_digest(image_digest):
            raise ConveyorError(f"{image_digest!r} is not a sha256 digest")
        return cls(name, image_digest.removeprefix("sha256:"))


@dataclass(frozen=True)
class Statement:
    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any]

    def covers(self, image_digest: str) -> bool:
        return any(f"sha256:{subject.sha256}" == image_digest for subject in self.subjects)

    def to_json(self) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": s.name, "digest": {"sha256": s.sha256}} for s in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_bytes(cls, payload: bytes) -> Statement:
        try:
            raw = json.loads(payload)
            if raw["_type"] != STATEMENT_TYPE:
                raise ValueError(f"_type is {raw['_type']!r}, not {STATEMENT_TYPE}")
            subjects = tuple(
                Subject(str(item["name"]), str(item["digest"]["sha256"])) for item in raw["subject"]
            )
            if not subjects or not isinstance(raw["predicate"], dict):
                raise ValueError("a statement needs a subject and an object predicate")
            return cls(subjects, str(raw["predicateType"]), raw["predicate"])
        except (ValueError, KeyError, TypeError) as error:
            raise AttestationError(
                Refusal.MALFORMED, f"the payload is not an in-toto Statement v1: {error}"
            ) from error


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode(),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()} for s in self.signatures
            ],
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        try:
            raw = json.loads(data)
            signatures = tuple(
                Signature(str(item.get("keyid") or ""), _b64decode(item["sig"]))
                for item in raw.get("signatures") or []
            )
            return cls(str(raw["payloadType"]), _b64decode(raw["payload"]), signatures)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise AttestationError(Refusal.MALFORMED, f"not a DSSE envelope: {error}") from error


def _b64decode(text: str) -> bytes:
    # DSSE readers accept standard or URL-safe base64, with or without padding.
    normalised = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(normalised + "=" * (-len(normalised) % 4), validate=True)
    except binascii.Error as error:
        raise ValueError(f"invalid base64: {error}") from error


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature actually covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def sign_statement(statement: Statement, key: SigningKey) -> Envelope:
    payload = statement.to_bytes()
    signature = Signature(key.key_id, key.sign(pae(PAYLOAD_TYPE, payload)))
    return Envelope(PAYLOAD_TYPE, payload, (signature,))


def check_signature(envelope: Envelope, trusted: TrustedKeys) -> PublicKey:
    """The pinned key that signed the envelope; raises AttestationError naming the refusal."""
    if envelope.payload_type != PAYLOAD_TYPE:
        raise AttestationError(
            Refusal.WRONG_PAYLOAD_TYPE,
            f"payload type is {envelope.payload_type!r}, expected {PAYLOAD_TYPE}",
        )
    if not envelope.signatures:
        raise AttestationError(Refusal.UNSIGNED, "the envelope carries no signature")
    signed = pae(envelope.payload_type, envelope.payload)
    known_but_invalid: list[str] = []
    for signature in envelope.signatures:
        # An empty keyid is only a missing hint: try every pinned key.
        candidates = [trusted.get(signature.keyid)] if signature.keyid else list(trusted)
        for key in candidates:
            if key is None:
                continue
            if key.verifies(signature.sig, signed):
                return key
            known_but_invalid.append(key.short_id)
    if known_but_invalid:
        raise AttestationError(
            Refusal.TAMPERED,
            f"the signature by key {', '.join(known_but_invalid)} does not match the payload "
            "(tampered)",
            hint="the envelope was changed after signing; rebuild and re-attest the image",
        )
    ids = ", ".join(s.keyid[:16] or "(none)" for s in envelope.signatures)
    raise AttestationError(
        Refusal.UNKNOWN_KEY,
        f"signed by unknown key {ids}",
        hint="pin the signer's public key in the policy's trusted keys",
    )


def verify_envelope(envelope: Envelope | bytes, trusted: TrustedKeys) -> Statement:
    """The statement inside a well-formed envelope signed by a pinned key, or a refusal."""
    if isinstance(envelope, bytes):
        envelope = Envelope.from_bytes(envelope)
    check_signature(envelope, trusted)
    return Statement.from_bytes(envelope.payload)


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("attestation times must be timezone-aware")
    return moment.isoformat().replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return moment


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _parse_time(str(value))


def _sha256_hex(digest: str) -> str:
    if not is_digest(digest):
        raise ConveyorError(f"{digest!r} is not a sha256 digest")
    return digest.removeprefix("sha256:")


@dataclass(frozen=True)
class BuildFacts:
    """What a provenance records about one image build."""

    repository: str
    commit: str
    pipeline: str
    job: str
    run_id: str
    started_on: datetime
    finished_on: datetime
    branch: str | None = None
    ref: str | None = None
    base_image: str | None = None
    base_image_digest: str | None = None
    vuln_db_digest: str | None = None
    internal_parameters: Mapping[str, Any] = field(default_factory=dict)
    builder_version: str = __version__


def provenance_predicate(facts: BuildFacts) -> dict[str, Any]:
    external = {
        "repository": facts.repository,
        "ref": facts.ref or (f"refs/heads/{facts.branch}" if facts.branch else None),
        "branch": facts.branch,
        "commit": facts.commit,
        "pipeline": facts.pipeline,
        "job": facts.job,
    }
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {k: v for k, v in external.items() if v is not None},
            "internalParameters": dict(facts.internal_parameters),
            "resolvedDependencies": _resolved_dependencies(facts),
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"conveyor": facts.builder_version}},
            "metadata": {
                "invocationId": facts.run_id,
                "startedOn": _rfc3339(facts.started_on),
                "finishedOn": _rfc3339(facts.finished_on),
            },
        },
    }


def _resolved_dependencies(facts: BuildFacts) -> list[dict[str, Any]]:
    repository = facts.repository if "://" in facts.repository else f"file://{facts.repository}"
    source: dict[str, Any] = {
        "uri": f"git+{repository}@{facts.commit}",
        "digest": {"gitCommit": facts.commit},
    }
    dependencies = [source]
    if facts.base_image_digest:
        base: dict[str, Any] = {
            "name": "base-image",
            "digest": {"sha256": _sha256_hex(facts.base_image_digest)},
        }
        if facts.base_image:
            base["uri"] = f"oci://{facts.base_image}"
        dependencies.append(base)
    if facts.vuln_db_digest:
        dependencies.append(
            {"name": "vulnerability-db", "digest": {"sha256": _sha256_hex(facts.vuln_db_digest)}}
        )
    return dependencies


@dataclass(frozen=True)
class ProvenanceSource:
    """The source a provenance says the image was built from."""

    repository: str
    branch: str | None
    commit: str

    @classmethod
    def from_statement(cls, statement: Statement) -> ProvenanceSource:
        try:
            params = statement.predicate["buildDefinition"]["externalParameters"]
            ref = params.get("ref") or ""
            branch = params.get("branch") or (
                ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
            )
            return cls(str(params["repository"]), branch, str(params["commit"]))
        except (KeyError, TypeError, AttributeError) as error:
            raise AttestationError(
                Refusal.MALFORMED, f"the provenance lacks its source: {error!r}"
            ) from error


@dataclass(frozen=True)
class ScanSummary:
    """The vulnerability scan verdict for one image, against one database import."""

    scanner: str
    scanner_version: str
    db_digest: str
    db_imported_at: datetime
    scanned_at: datetime
    passed: bool
    counts: Mapping[str, int] = field(default_factory=dict)  # findings by severity
    finding_ids: tuple[str, ...] = ()
    # The newest advisory's `modified`: how old the database is (None: an older
    # Conveyor's scan, which did not say).
    db_newest_advisory: datetime | None = None

    def to_predicate(self) -> dict[str, Any]:
        database = {"digest": self.db_digest, "importedAt": _rfc3339(self.db_imported_at)}
        if self.db_newest_advisory is not None:
            database["newestAdvisory"] = _rfc3339(self.db_newest_advisory)
        return {
            "scanner": {"name": self.scanner, "version": self.scanner_version},
            "database": database,
            "scannedAt": _rfc3339(self.scanned_at),
            "passed": self.passed,
            "counts": dict(sorted(self.counts.items())),
            "findings": sorted(self.finding_ids),
        }

    @classmethod
    def from_predicate(cls, predicate: Mapping[str, Any]) -> ScanSummary:
        try:
            return cls(
                scanner=str(predicate["scanner"]["name"]),
                scanner_version=str(predicate["scanner"]["version"]),
                db_digest=str(predicate["database"]["digest"]),
                db_imported_at=_parse_time(predicate["database"]["importedAt"]),
                db_newest_advisory=_optional_time(predicate["database"].get("newestAdvisory")),
                scanned_at=_parse_time(predicate["scannedAt"]),
                passed=predicate["passed"] is True,
                counts={str(k): int(v) for k, v in predicate["counts"].items()},
                finding_ids=tuple(str(i) for i in predicate["findings"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise AttestationError(
                Refusal.MALFORMED, f"the scan result is incomplete: {error!r}"
            ) from error


def provenance_statement(image_name: str, image_digest: str, facts: BuildFacts) -> Statement:
    subject = Subject.of_image(image_name, image_digest)
    return Statement((subject,), SLSA_PROVENANCE, provenance_predicate(facts))


def sbom_statement(image_name: str, image_digest: str, bom_json: bytes) -> Statement:
    subject = Subject.of_image(image_name, image_digest)
    return Statement((subject,), CYCLONEDX_BOM, json.loads(bom_json))


def scan_statement(image_name: str, image_digest: str, summary: ScanSummary) -> Statement:
    subject = Subject.of_image(image_name, image_digest)
    return Statement((subject,), VULN_SCAN, summary.to_predicate())
