"""A run's evidence as pages: `/runs/{id}/findings` (new, unchanged and waived findings
with file:line and rule, and the gates' decisions) and `/runs/{id}/tests` (failed tests
with their messages, flaky and slow ones, coverage), from service/reports.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from conveyor.findings.model import Disposition
from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import templates
from conveyor.service.reports import run_report

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require("runs", Action.READ))]
Context = Annotated[ServerContext, Depends(server_context)]


@router.get("/runs/{run_id}/findings", response_class=HTMLResponse)
def findings_page(
    request: Request, principal: Reader, context: Context, run_id: int
) -> HTMLResponse:
    report = run_report(context.store, run_id)
    grouped = report.by_disposition()
    return templates.TemplateResponse(
        request,
        "reports/findings.html",
        {
            "principal": principal,
            "run": report.run,
            "gates": report.gates,
            "groups": [(d.value, grouped[d]) for d in Disposition],
            "total": len(report.findings),
        },
    )


@router.get("/runs/{run_id}/tests", response_class=HTMLResponse)
def tests_page(request: Request, principal: Reader, context: Context, run_id: int) -> HTMLResponse:
    report = run_report(context.store, run_id)
    return templates.TemplateResponse(
        request,
        "reports/tests.html",
        {
            "principal": principal,
            "run": report.run,
            "suites": [*report.tests, *report.e2e],
            "coverage": report.coverage,
        },
    )
