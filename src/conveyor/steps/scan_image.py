"""The `scan-image` step: the image's packages against the offline OSV database, gated.

All of it happens in `finalize` (never cached): its answer depends on the database,
which changes without the job's inputs changing, and on today's date (waivers expire).
It takes about 10 ms once the index is built.
"""

from __future__ import annotations

import json
import time
from datetime import date
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import FinalizeOnlyStep, StepContext, failed, passed
from conveyor.findings.reports import GateReport, VulnScanReport
from conveyor.steps.image_steps import (
    built_image,
    image_store,
    packages_cache,
    project_path,
    scan_record_path,
)


class ScanImageParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    from_: str | None = Field(default=None, alias="from", description="The build-image job.")


class ScanImageStep(FinalizeOnlyStep):
    name: ClassVar[str] = "scan-image"
    params_model: ClassVar[type[BaseModel]] = ScanImageParams
    version: ClassVar[str] = "1"
    why_in_finalize: ClassVar[str] = "its answer depends on the database"

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        assert isinstance(params, ScanImageParams)
        # Imported here: the step registry is loaded by `conveyor lint`, which must stay fast.
        from conveyor.supply.imagescan import scan_image
        from conveyor.supply.osv.db import VulnDB

        started = time.monotonic()
        image = built_image(ctx, params.from_)
        settings = ctx.evidence.images
        with VulnDB(project_path(ctx, settings.vulndb)) as db:
            result = scan_image(
                image_store(ctx),
                image.repository,
                image.digest,
                db=db,
                policy=settings.vulnerabilities,
                project_dir=ctx.workspace,
                cache_dir=packages_cache(ctx),
                today=date.today(),
            )
        evidence = ctx.evidence
        evidence.publish(
            "sarif", json.dumps(result.sarif).encode(), {"results": len(result.findings)}
        )
        evidence.publish(
            "vuln-scan",
            VulnScanReport.model_validate({**result.report, "job": ctx.job_id}).to_bytes(),
            {"image": result.image, "passed": result.decision.passed},
        )
        if result.findings:  # VEX states the exploitability of what was found: none, nothing
            evidence.publish("vex", result.vex.encode(), {"image": result.image})
        evidence.publish(
            "gate",
            GateReport(
                job=ctx.job_id,
                gate="vulnerabilities",
                passed=result.decision.passed,
                reasons=result.decision.reasons,
                counts=result.decision.counts,
            ).to_bytes(),
            {"gate": "vulnerabilities", "passed": result.decision.passed},
        )
        record = scan_record_path(ctx, ctx.job_id)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(
            json.dumps(
                {
                    "image": result.image,
                    "passed": result.decision.passed,
                    "db_digest": result.db_digest,
                    "db_imported_at": result.database.imported_at,
                    "db_newest_advisory": result.database.newest_advisory,
                    "counts": result.decision.counts,
                    "finding_ids": sorted({f.rule_id for f in result.findings}),
                }
            )
        )
        ctx.say(
            f"scan-image: {len(result.packages)} packages, {len(result.findings)} "
            f"vulnerabilities (database {result.db_digest[:19]})"
        )
        for reason in result.decision.reasons:
            ctx.say(f"  ✗ {reason}")
        took = time.monotonic() - started
        if result.decision.passed:
            return passed(took, result.decision.summary())
        first = result.decision.reasons[0] if result.decision.reasons else ""
        return failed(f"{result.decision.summary()}: {first}", took)
