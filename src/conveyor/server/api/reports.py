"""A run's reports: findings, tests, coverage, gate decisions (and staging's E2E and
load tests), read back through service/reports.py as `conveyor report` does.

    GET /api/v1/runs/{id}/reports           the kinds present, each with a summary
    GET /api/v1/runs/{id}/reports/{kind}    the documents: findings, tests, coverage,
                                            gates, e2e, perf
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from conveyor.errors import NotFoundError
from conveyor.server.api.common import ERRORS, Context, reading, to_jsonable
from conveyor.service.report_views import REPORT_KINDS, report_document, report_summaries

router = APIRouter(prefix="/api/v1/runs", tags=["reports"], dependencies=reading("reports"))


@router.get("/{run_id}/reports", responses=ERRORS, summary="A run's report kinds and summaries")
def reports(run_id: int, context: Context) -> dict[str, Any]:
    return {"run": run_id, "items": to_jsonable(report_summaries(context.store, run_id))}


@router.get("/{run_id}/reports/{kind}", responses=ERRORS, summary="A run's documents of a kind")
def report(run_id: int, kind: str, context: Context) -> dict[str, Any]:
    if kind not in REPORT_KINDS:
        raise NotFoundError(f"no report kind {kind!r}", hint=f"one of: {', '.join(REPORT_KINDS)}")
    document = to_jsonable(report_document(context.store, run_id, kind))
    return {"run": run_id, "kind": kind, **document}
