from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from conveyor.errors import ConveyorError
from conveyor.supply.attest import (
    BuildFacts,
    Envelope,
    ScanSummary,
    Statement,
    provenance_statement,
    sbom_statement,
    scan_statement,
    sign_statement,
)
from conveyor.supply.keys import SigningKey, generate_keypair, load_private
from conveyor.supply.policy import AdmissionDecision, AdmissionPolicy, CheckName, admit
from conveyor.supply.referrers import (
    PROVENANCE_ARTIFACT,
    SBOM_ARTIFACT,
    VULN_SCAN_ARTIFACT,
    attach,
)
from supply.memory_store import MemoryStore, put_image

NOW = datetime(2024, 5, 2, 9, 0, tzinfo=UTC)
DB = "sha256:" + "ef" * 32
OTHER_IMAGE = "sha256:" + "99" * 32


@dataclasses.dataclass
class Image:
    store: MemoryStore
    digest: str
    signer: SigningKey
    stranger: SigningKey  # a valid key nobody pinned
    policy: AdmissionPolicy

    def facts(self, **changes: object) -> BuildFacts:
        facts = BuildFacts(
            repository="https://git.example.org/acme/shop",
            branch="main",
            commit="0123456789abcdef0123456789abcdef01234567",
            pipeline="ci",
            job="build-image",
            run_id="7",
            started_on=NOW - timedelta(hours=1),
            finished_on=NOW - timedelta(minutes=50),
            vuln_db_digest=DB,
        )
        return dataclasses.replace(facts, **changes)  # type: ignore[arg-type]

    def scan(self, **changes: object) -> ScanSummary:
        summary = ScanSummary(
            scanner="conveyor-osv",
            scanner_version="1",
            db_digest=DB,
            db_imported_at=NOW - timedelta(hours=3),
            db_newest_advisory=NOW - timedelta(hours=5),
            scanned_at=NOW - timedelta(minutes=45),
            passed=True,
            counts={"low": 1},
            finding_ids=("PYSEC-2024-1",),
        )
        return dataclasses.replace(summary, **changes)  # type: ignore[arg-type]

    def sign(self, statement: Statement) -> Envelope:
        return sign_statement(statement, self.signer)

    def provenance(self, **changes: object) -> Envelope:
        return self.sign(provenance_statement("shop", self.digest, self.facts(**changes)))

    def sbom(self) -> Envelope:
        return self.sign(sbom_statement("shop", self.digest, b'{"bomFormat": "CycloneDX"}'))

    def scanned(self, **changes: object) -> Envelope:
        return self.sign(scan_statement("shop", self.digest, self.scan(**changes)))

    def attach(self, envelope: Envelope | None, artifact_type: str) -> None:
        if envelope is not None:
            attach(self.store, "shop", self.digest, envelope, artifact_type)

    def decide(self, policy: AdmissionPolicy | None = None) -> AdmissionDecision:
        return admit(self.store, "shop", self.digest, policy or self.policy, NOW)


@pytest.fixture
def image(tmp_path: Path) -> Image:
    signer = load_private(generate_keypair(tmp_path / "pinned", "release").private_path)
    stranger = load_private(generate_keypair(tmp_path / "other", "stranger").private_path)
    policy = AdmissionPolicy.model_validate(
        {
            "trusted_keys": [str(tmp_path / "pinned")],
            "allowed_repositories": ["https://git.example.org/acme/*"],
            "allowed_branches": ["main", "release/*"],
            "max_db_age": "24h",
        }
    )
    store = MemoryStore()
    return Image(store, put_image(store, "shop"), signer, stranger, policy)


# Integrity is only listed when stored evidence no longer matches its digest.
EVERY_CHECK = set(CheckName) - {CheckName.INTEGRITY}


def attach_all(
    image: Image,
    provenance: Envelope | None = None,
    sbom: Envelope | None = None,
    scan: Envelope | None = None,
) -> None:
    """The usual three attestations, with any of them replaced."""
    image.attach(provenance or image.provenance(), PROVENANCE_ARTIFACT)
    image.attach(sbom or image.sbom(), SBOM_ARTIFACT)
    image.attach(scan or image.scanned(), VULN_SCAN_ARTIFACT)


def failed_names(decision: AdmissionDecision) -> set[CheckName]:
    return {check.name for check in decision.failed}


def test_a_fully_attested_image_is_admitted_with_every_check_listed(image: Image) -> None:
    attach_all(image)
    decision = image.decide()

    assert decision.admitted
    assert decision.failed == []
    assert {check.name for check in decision.checks} == EVERY_CHECK
    signatures = [c for c in decision.checks if c.name is CheckName.SIGNATURE]
    assert len(signatures) == 3
    assert all(image.signer.key_id[:16] in c.detail for c in signatures)


def _unsigned_sbom(image: Image) -> None:
    attach_all(image, sbom=dataclasses.replace(image.sbom(), signatures=()))


def _provenance_by_unpinned_key(image: Image) -> None:
    statement = provenance_statement("shop", image.digest, image.facts())
    attach_all(image, provenance=sign_statement(statement, image.stranger))


def _tampered_provenance(image: Image) -> None:
    envelope = image.provenance(branch="feature/x")
    payload = envelope.payload.replace(b"feature/x", b"main")
    attach_all(image, provenance=dataclasses.replace(envelope, payload=payload))


def _provenance_of_another_image(image: Image) -> None:
    other = provenance_statement("shop", OTHER_IMAGE, image.facts())
    attach_all(image, provenance=image.sign(other))


def _wrong_branch(image: Image) -> None:
    attach_all(image, provenance=image.provenance(branch="feature/x", ref=None))


def _wrong_repository(image: Image) -> None:
    attach_all(image, provenance=image.provenance(repository="https://evil.example.org/shop"))


def _no_sbom(image: Image) -> None:
    image.attach(image.provenance(), PROVENANCE_ARTIFACT)
    image.attach(image.scanned(), VULN_SCAN_ARTIFACT)


def _no_scan(image: Image) -> None:
    image.attach(image.provenance(), PROVENANCE_ARTIFACT)
    image.attach(image.sbom(), SBOM_ARTIFACT)


def _stale_database(image: Image) -> None:
    scanned = image.scanned(
        db_imported_at=NOW - timedelta(days=3), db_newest_advisory=NOW - timedelta(days=3)
    )
    attach_all(image, scan=scanned)


def _old_database_imported_today(image: Image) -> None:
    """A two-year-old advisory export imported this morning is two years old."""
    scanned = image.scanned(
        db_imported_at=NOW - timedelta(hours=1), db_newest_advisory=NOW - timedelta(days=730)
    )
    attach_all(image, scan=scanned)


def _scan_that_does_not_date_its_advisories(image: Image) -> None:
    attach_all(image, scan=image.scanned(db_newest_advisory=None))


def _failed_scan(image: Image) -> None:
    attach_all(image, scan=image.scanned(passed=False, counts={"critical": 1}))


@pytest.mark.parametrize(
    ("arrange", "failing", "reason"),
    [
        (_unsigned_sbom, {CheckName.SIGNATURE, CheckName.SBOM}, "unsigned"),
        (
            _provenance_by_unpinned_key,
            {CheckName.SIGNATURE, CheckName.PROVENANCE}
            | {CheckName.SOURCE_REPOSITORY, CheckName.SOURCE_BRANCH},
            "unknown key",
        ),
        (
            _tampered_provenance,
            {CheckName.SIGNATURE, CheckName.PROVENANCE}
            | {CheckName.SOURCE_REPOSITORY, CheckName.SOURCE_BRANCH},
            "tampered",
        ),
        (
            _provenance_of_another_image,
            {CheckName.SUBJECT, CheckName.PROVENANCE}
            | {CheckName.SOURCE_REPOSITORY, CheckName.SOURCE_BRANCH},
            "sha256:999999999999",
        ),
        (_wrong_branch, {CheckName.SOURCE_BRANCH}, "feature/x"),
        (_wrong_repository, {CheckName.SOURCE_REPOSITORY}, "https://evil.example.org/shop"),
        (_no_sbom, {CheckName.SBOM}, "no verified SBOM"),
        (
            _no_scan,
            {CheckName.SCAN, CheckName.SCAN_PASSED, CheckName.SCAN_DB_AGE},
            "no verified vulnerability scan",
        ),
        (_stale_database, {CheckName.SCAN_DB_AGE}, "limit 24h00m"),
        (
            _old_database_imported_today,
            {CheckName.SCAN_DB_AGE},
            "newest advisory 730 days old (imported 1h00m ago) (limit 24h00m)",
        ),
        (
            _scan_that_does_not_date_its_advisories,
            {CheckName.SCAN_DB_AGE},
            "does not say how new its advisories are; scan and sign the image again",
        ),
        (_failed_scan, {CheckName.SCAN_PASSED}, "1 critical"),
    ],
    ids=lambda value: getattr(value, "__name__", "").strip("_") or None,
)
def test_each_unmet_requirement_refuses_naming_its_check(
    image: Image, arrange: Callable[[Image], None], failing: set[CheckName], reason: str
) -> None:
    arrange(image)
    decision = image.decide()

    assert not decision.admitted
    assert failed_names(decision) == failing
    assert any(reason in check.detail for check in decision.failed)


def test_a_refusal_lists_every_failed_check(image: Image) -> None:
    attach_all(
        image,
        provenance=image.provenance(branch="feature/x", ref=None),
        scan=image.scanned(passed=False),
    )
    assert failed_names(image.decide()) == {CheckName.SOURCE_BRANCH, CheckName.SCAN_PASSED}


def test_an_image_without_attestations_is_refused(image: Image) -> None:
    decision = image.decide()
    assert not decision.admitted
    assert "no attestation is attached" in decision.failed[0].detail
    assert CheckName.PROVENANCE in failed_names(decision)


def test_the_newest_scan_decides(image: Image) -> None:
    attach_all(image, scan=image.scanned(passed=False, scanned_at=NOW - timedelta(hours=2)))
    image.attach(
        image.scanned(passed=True, scanned_at=NOW - timedelta(minutes=5)), VULN_SCAN_ARTIFACT
    )
    assert image.decide().admitted


def test_requirements_switched_off_are_listed_as_passed(image: Image) -> None:
    image.attach(image.provenance(), PROVENANCE_ARTIFACT)
    relaxed = image.policy.model_copy(update={"require_sbom": False, "require_scan": False})

    decision = image.decide(relaxed)

    assert decision.admitted
    assert {check.name for check in decision.checks} == EVERY_CHECK
    sbom = next(c for c in decision.checks if c.name is CheckName.SBOM)
    assert "not required" in sbom.detail


def test_a_policy_pinning_no_key_is_an_error(image: Image, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    policy = image.policy.model_copy(update={"trusted_keys": [tmp_path / "empty"]})
    with pytest.raises(ConveyorError, match="pins no public key"):
        image.decide(policy)


def test_policy_reads_durations_and_refuses_unknown_keys(tmp_path: Path) -> None:
    base = {"trusted_keys": ["keys"], "allowed_repositories": ["*"]}
    policy = AdmissionPolicy.model_validate({**base, "max_db_age": "1h30m"})
    assert policy.max_db_age == 5400.0
    assert policy.allowed_branches == ["main"]
    assert policy.relative_to(tmp_path).trusted_keys == [tmp_path / "keys"]
    with pytest.raises(ValidationError, match="require_signatures"):
        AdmissionPolicy.model_validate({**base, "require_signatures": True})
