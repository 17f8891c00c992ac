"""The `sign` step: signed evidence next to the image, as OCI referrers.

Three in-toto statements in DSSE envelopes, signed with the project's ed25519 key:
SLSA provenance v1 (the commit, pipeline, job and run, the base image and the
vulnerability database it was checked against), the CycloneDX SBOM of the image's
packages, and the vulnerability scan's verdict. `finalize` only: a signature binds this
run, so it is never replayed from the cache.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from conveyor import __version__
from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import RAW_DIR, FinalizeOnlyStep, StepContext, passed
from conveyor.errors import ConveyorError
from conveyor.steps.image_steps import (
    BuiltImage,
    built_image,
    image_store,
    packages_cache,
    project_path,
    scan_record_path,
)

if TYPE_CHECKING:
    from conveyor.supply.attest import BuildFacts, ScanSummary
    from conveyor.supply.keys import SigningKey
    from conveyor.supply.oci.layout import LayoutStore


class SignParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    from_: str | None = Field(default=None, alias="from", description="The build-image job.")
    scan_from: str | None = Field(default=None, description="The scan-image job.")


class SignStep(FinalizeOnlyStep):
    name: ClassVar[str] = "sign"
    params_model: ClassVar[type[BaseModel]] = SignParams
    version: ClassVar[str] = "1"
    why_in_finalize: ClassVar[str] = "a signature binds this run"

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        assert isinstance(params, SignParams)
        started = datetime.now(UTC)
        clock = time.monotonic()
        image = built_image(ctx, params.from_)
        key = _signing_key(ctx)
        store = image_store(ctx)
        scan = _scan_record(ctx, params.scan_from)
        if _already_signed(store, image, key.key_id, scan):
            detail = f"{image.name} already carries this key's attestations for this scan"
            ctx.say(f"sign: {detail}")
            return passed(time.monotonic() - clock, detail)
        # Imported here, past the early return: SBOM and signing libraries are heavy.
        from conveyor.supply.attest import (
            provenance_statement,
            sbom_statement,
            scan_statement,
            sign_statement,
        )
        from conveyor.supply.imagescan import image_packages
        from conveyor.supply.oci.model import ImageRef
        from conveyor.supply.referrers import (
            PROVENANCE_ARTIFACT,
            SBOM_ARTIFACT,
            VULN_SCAN_ARTIFACT,
            attach,
        )
        from conveyor.supply.sbom import sbom_for_image

        created = datetime.fromtimestamp(int(ctx.env.get("SOURCE_DATE_EPOCH", "0")), UTC)
        packages = image_packages(store, image.repository, image.digest, packages_cache(ctx))
        bom = sbom_for_image(
            ImageRef(image.repository, tag=image.tags[0] if image.tags else None),
            image.digest,
            packages,
            created=created,
        )
        statements = [
            (
                provenance_statement(
                    image.repository, image.digest, _facts(ctx, image, scan, started)
                ),
                PROVENANCE_ARTIFACT,
            ),
            (sbom_statement(image.repository, image.digest, bom), SBOM_ARTIFACT),
        ]
        if scan is not None:
            statements.append(
                (scan_statement(image.repository, image.digest, _summary(scan)), VULN_SCAN_ARTIFACT)
            )
        attached = []
        for statement, artifact_type in statements:
            envelope = sign_statement(statement, key)
            attached.append(attach(store, image.repository, image.digest, envelope, artifact_type))
            ctx.say(f"sign: {artifact_type} signed by {key.key_id[:16]} and attached")
        ctx.evidence.publish("sbom", bom, {"image": image.name, "packages": len(packages)})
        ctx.evidence.publish(
            "attestations",
            json.dumps(attached).encode(),
            {"image": image.name, "count": len(attached)},
        )
        return passed(time.monotonic() - clock, f"{len(attached)} attestations for {image.name}")


def _signing_key(ctx: StepContext) -> SigningKey:
    from conveyor.supply.keys import load_private

    path = project_path(ctx, ctx.evidence.images.signing_key)
    if not path.exists():
        raise ConveyorError(
            f"no signing key at {path}",
            hint="create one with `conveyor keys generate` and trust its .pub in "
            "images.admission.trusted_keys",
        )
    return load_private(path)


def _scan_record(ctx: StepContext, job: str | None) -> dict[str, object] | None:
    candidates = (
        [scan_record_path(ctx, job)]
        if job
        else sorted((ctx.workspace / RAW_DIR).glob("*/scan.json"))
    )
    found = [path for path in candidates if path.is_file()]
    return json.loads(found[0].read_text()) if found else None


def _facts(
    ctx: StepContext, image: BuiltImage, scan: dict[str, object] | None, started: datetime
) -> BuildFacts:
    from conveyor.supply.attest import BuildFacts

    env = ctx.env
    base = image.record.get("base") or {}
    return BuildFacts(
        repository=env.get("CONVEYOR_SOURCE_URL") or env.get("CONVEYOR_PROJECT_DIR", ""),
        commit=env.get("CONVEYOR_COMMIT_SHA", ""),
        pipeline=env.get("CONVEYOR_PIPELINE", ""),
        job=ctx.job_id,
        run_id=env.get("CONVEYOR_RUN_ID", ""),
        started_on=started,
        finished_on=datetime.now(UTC),
        branch=env.get("CONVEYOR_BRANCH") or None,
        base_image=base.get("name"),
        base_image_digest=base.get("digest"),
        vuln_db_digest=str(scan["db_digest"]) if scan else None,
        builder_version=__version__,
    )


def _summary(scan: dict[str, object]) -> ScanSummary:
    from conveyor.supply.attest import ScanSummary

    imported = str(scan.get("db_imported_at") or "1970-01-01T00:00:00+00:00")
    newest = scan.get("db_newest_advisory")
    counts = scan.get("counts") or {}
    ids = scan.get("finding_ids") or []
    assert isinstance(counts, dict) and isinstance(ids, list)
    return ScanSummary(
        scanner="conveyor-osv",
        scanner_version=__version__,
        db_digest=str(scan["db_digest"]),
        db_imported_at=datetime.fromisoformat(imported),
        db_newest_advisory=datetime.fromisoformat(str(newest)) if newest else None,
        scanned_at=datetime.now(UTC),
        passed=bool(scan["passed"]),
        counts={str(k): int(v) for k, v in counts.items()},
        finding_ids=tuple(str(i) for i in ids),
    )


def _already_signed(
    store: LayoutStore, image: BuiltImage, key_id: str, scan: dict[str, object] | None
) -> bool:
    """Signing again adds nothing when the image (immutable, by digest) already carries
    this key's provenance and SBOM and, when scanned, a scan verdict from the same
    database with the same outcome. Admission verifies them; this only avoids duplicates."""
    from conveyor.supply.referrers import (
        PROVENANCE_ARTIFACT,
        SBOM_ARTIFACT,
        VULN_SCAN_ARTIFACT,
        attestations,
    )

    ours: dict[str, dict[str, Any]] = {}
    for stored in attestations(store, image.repository, image.digest):
        envelope = json.loads(stored.envelope)
        if any(sig.get("keyid") == key_id for sig in envelope.get("signatures", [])):
            ours[stored.artifact_type] = json.loads(base64.b64decode(envelope["payload"]))
    needed = {PROVENANCE_ARTIFACT, SBOM_ARTIFACT} | ({VULN_SCAN_ARTIFACT} if scan else set())
    if not needed <= ours.keys():
        return False
    if scan is None:
        return True
    verdict = ours[VULN_SCAN_ARTIFACT].get("predicate", {})
    database = verdict.get("database", {})
    return bool(
        database.get("digest") == scan["db_digest"]
        and verdict.get("passed") == scan["passed"]
        # a verdict signed before scans dated their advisories lacks what admission reads
        and ("newestAdvisory" in database or not scan.get("db_newest_advisory"))
    )
