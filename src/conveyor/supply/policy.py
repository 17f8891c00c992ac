"""The deploy admission policy: which images may be deployed, judged on signed evidence only.

Every attestation attached to the image must be signed by a pinned key and name the
image as its subject; only those verified statements are then read for the provenance
(source repository and branch), the SBOM and the vulnerability scan. Every check is
reported, passed or not, so a refusal says everything that is wrong at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from wcmatch import glob as wcglob

from conveyor.errors import ConveyorError
from conveyor.spec.durations import format_age, format_duration
from conveyor.spec.images import AdmissionPolicy
from conveyor.supply.attest import (
    CYCLONEDX_BOM,
    SLSA_PROVENANCE,
    VULN_SCAN,
    AttestationError,
    Envelope,
    ProvenanceSource,
    ScanSummary,
    Statement,
    check_signature,
)
from conveyor.supply.keys import TrustedKeys
from conveyor.supply.oci.store import ImageStore
from conveyor.supply.referrers import StoredAttestation, attestations

# `*` stays within one path segment (`acme/*`, `release/*`); `**` crosses them.
_GLOB_FLAGS = wcglob.GLOBSTAR | wcglob.BRACE | wcglob.NEGATE


class CheckName(StrEnum):
    INTEGRITY = "integrity"  # the stored evidence reads back with its own digest
    SIGNATURE = "signature"
    SUBJECT = "subject"
    PROVENANCE = "provenance"
    SOURCE_REPOSITORY = "source repository"
    SOURCE_BRANCH = "source branch"
    SBOM = "sbom"
    SCAN = "scan"
    SCAN_PASSED = "scan passed"
    SCAN_DB_AGE = "scan database age"


@dataclass(frozen=True)
class Check:
    name: CheckName
    passed: bool
    detail: str


@dataclass(frozen=True)
class AdmissionDecision:
    admitted: bool
    checks: list[Check]

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]


def admit(
    store: ImageStore, repository: str, image_digest: str, policy: AdmissionPolicy, now: datetime
) -> AdmissionDecision:
    """Judge the image `repository@image_digest` against `policy` at time `now` (tz-aware)."""
    trusted = TrustedKeys.from_paths(policy.trusted_keys)
    if not len(trusted):
        raise ConveyorError(
            "the admission policy pins no public key",
            hint="list .pub files (or a directory of them) under trusted_keys",
        )
    checks: list[Check] = []
    stored = attestations(store, repository, image_digest)
    statements = _verified(stored, image_digest, trusted, checks)
    checks += _provenance_checks(_of_type(statements, SLSA_PROVENANCE), policy)
    checks.append(_sbom_check(_of_type(statements, CYCLONEDX_BOM), policy))
    checks += _scan_checks(_of_type(statements, VULN_SCAN), policy, now)
    return AdmissionDecision(all(check.passed for check in checks), checks)


def _short(digest: str) -> str:
    return digest[:19]


def _of_type(statements: list[Statement], predicate_type: str) -> list[Statement]:
    return [s for s in statements if s.predicate_type == predicate_type]


def _verified(
    stored: list[StoredAttestation], image_digest: str, trusted: TrustedKeys, checks: list[Check]
) -> list[Statement]:
    """The statements signed by a pinned key about this image; a check for each attestation."""
    if not stored:
        checks.append(Check(CheckName.SIGNATURE, False, "no attestation is attached to the image"))
    statements: list[Statement] = []
    for item in stored:
        kind = item.artifact_type.removeprefix("application/vnd.conveyor.").removesuffix("+json")
        label = f"{kind} {_short(item.manifest_digest)}"
        try:
            envelope = Envelope.from_bytes(item.envelope)
            key = check_signature(envelope, trusted)
            statement = Statement.from_bytes(envelope.payload)
        except AttestationError as error:
            checks.append(Check(CheckName.SIGNATURE, False, f"{label}: {error.message}"))
            continue
        checks.append(Check(CheckName.SIGNATURE, True, f"{label}: signed by {key.short_id}"))
        if statement.covers(image_digest):
            checks.append(Check(CheckName.SUBJECT, True, f"{label}: names the image"))
            statements.append(statement)
        else:
            named = ", ".join(f"sha256:{s.sha256}"[:19] for s in statement.subjects)
            detail = f"{label}: attests {named}, not {_short(image_digest)}"
            checks.append(Check(CheckName.SUBJECT, False, detail))
    return statements


def _provenance_checks(provenances: list[Statement], policy: AdmissionPolicy) -> list[Check]:
    checks: list[Check] = []
    sources: list[ProvenanceSource] = []
    for statement in provenances:
        try:
            sources.append(ProvenanceSource.from_statement(statement))
        except AttestationError as error:
            checks.append(Check(CheckName.PROVENANCE, False, error.message))
    if sources:
        checks.append(Check(CheckName.PROVENANCE, True, f"{len(sources)} verified provenance"))
    elif policy.require_provenance:
        checks.append(Check(CheckName.PROVENANCE, False, "no verified provenance"))
    else:
        checks.append(Check(CheckName.PROVENANCE, True, "no provenance; not required"))
    checks.append(_source_check(CheckName.SOURCE_REPOSITORY, sources, policy))
    checks.append(_source_check(CheckName.SOURCE_BRANCH, sources, policy))
    return checks


def _source_check(
    name: CheckName, sources: list[ProvenanceSource], policy: AdmissionPolicy
) -> Check:
    if not sources:
        return Check(name, not policy.require_provenance, "no verified provenance to read")
    if name is CheckName.SOURCE_REPOSITORY:
        values = [source.repository for source in sources]
        patterns = policy.allowed_repositories
    else:
        values = [source.branch or "" for source in sources]
        patterns = policy.allowed_branches
    refused = [value or "(no branch)" for value in values if not _matches(value, patterns)]
    if refused:
        return Check(name, False, f"{', '.join(refused)} is not in {patterns}")
    return Check(name, True, f"{', '.join(sorted(set(values)))} is allowed")


def _matches(value: str, patterns: list[str]) -> bool:
    return bool(value) and bool(wcglob.globmatch(value, patterns, flags=_GLOB_FLAGS))


def _sbom_check(sboms: list[Statement], policy: AdmissionPolicy) -> Check:
    if sboms:
        return Check(CheckName.SBOM, True, "a verified SBOM is attached")
    if policy.require_sbom:
        return Check(CheckName.SBOM, False, "no verified SBOM")
    return Check(CheckName.SBOM, True, "no SBOM; not required")


def _scan_checks(scans: list[Statement], policy: AdmissionPolicy, now: datetime) -> list[Check]:
    checks: list[Check] = []
    summaries: list[ScanSummary] = []
    for statement in scans:
        try:
            summaries.append(ScanSummary.from_predicate(statement.predicate))
        except AttestationError as error:
            checks.append(Check(CheckName.SCAN, False, error.message))
    if not summaries:
        required = policy.require_scan
        detail = "no verified vulnerability scan" + ("" if required else "; not required")
        names = (CheckName.SCAN, CheckName.SCAN_PASSED, CheckName.SCAN_DB_AGE)
        return checks + [Check(name, not required, detail) for name in names]
    latest = max(summaries, key=lambda summary: summary.scanned_at)
    checks.append(
        Check(
            CheckName.SCAN, True, f"scanned by {latest.scanner} at {latest.scanned_at.isoformat()}"
        )
    )
    checks.append(_scan_passed_check(latest, policy))
    checks.append(_db_age_check(latest, policy, now))
    return checks


def _scan_passed_check(scan: ScanSummary, policy: AdmissionPolicy) -> Check:
    counts = ", ".join(f"{count} {severity}" for severity, count in scan.counts.items()) or "none"
    if scan.passed:
        return Check(CheckName.SCAN_PASSED, True, f"passed (findings: {counts})")
    return Check(
        CheckName.SCAN_PASSED,
        not policy.require_scan_passed,
        f"failed (findings: {counts}; {', '.join(scan.finding_ids[:5]) or 'no ids'})",
    )


def _db_age_check(scan: ScanSummary, policy: AdmissionPolicy, now: datetime) -> Check:
    """The database is as old as its newest advisory, not as its import: an export two
    years old imported this morning is two years old."""
    imported = format_duration(max((now - scan.db_imported_at).total_seconds(), 0))
    database = f"database {_short(scan.db_digest)}"
    if scan.db_newest_advisory is None:
        detail = f"{database} (imported {imported} ago) does not say how new its advisories are"
        if policy.max_db_age is None:
            return Check(CheckName.SCAN_DB_AGE, True, f"{detail}; no limit")
        return Check(CheckName.SCAN_DB_AGE, False, f"{detail}; scan and sign the image again")
    age = (now - scan.db_newest_advisory).total_seconds()
    detail = f"{database}: newest advisory {format_age(age)} old (imported {imported} ago)"
    if policy.max_db_age is None:
        return Check(CheckName.SCAN_DB_AGE, True, f"{detail}; no limit")
    limit = format_duration(policy.max_db_age)
    return Check(CheckName.SCAN_DB_AGE, age <= policy.max_db_age, f"{detail} (limit {limit})")
