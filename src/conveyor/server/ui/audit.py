"""Audit and release records: the audit chain's verification state with its latest
entries, and a diff between any two deploys of an environment (commits, configuration,
flags, SBOM packages, vulnerabilities)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import formatting, templates
from conveyor.service.audit import verify
from conveyor.service.environments import environment_spec
from conveyor.service.release_diff import configuration_rows
from conveyor.service.release_diff import release_diff as diff_of

formatting.register()
router = APIRouter(include_in_schema=False)
Context = Annotated[ServerContext, Depends(server_context)]
ENTRIES_SHOWN = 50


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    principal: Annotated[Principal, Depends(require("audit", Action.READ))],
    context: Context,
) -> HTMLResponse:
    verdict = verify(context.project, context.store)
    entries = list(reversed(context.store.audit_entries(last=ENTRIES_SHOWN)))
    return templates.TemplateResponse(
        request,
        "audit/audit.html",
        {"principal": principal, "verdict": verdict, "entries": entries},
    )


@router.get("/environments/{name}/diff", response_class=HTMLResponse)
def release_diff(
    request: Request,
    name: str,
    *,
    principal: Annotated[Principal, Depends(require("environments", Action.READ))],
    context: Context,
    from_: Annotated[int | None, Query(alias="from")] = None,
    to: Annotated[int | None, Query()] = None,
) -> HTMLResponse:
    environment_spec(context.project, name)  # 404 for an unknown one
    deploys = list(reversed(context.store.ledger.deploys.of_environment(name)))
    if to is None and deploys:
        to = deploys[0].id
    if from_ is None and len(deploys) > 1:
        from_ = deploys[1].id
    diff = rows = None
    if from_ is not None and to is not None:
        diff = diff_of(context.project, context.store, name, from_, to)
        rows = configuration_rows(diff)
    return templates.TemplateResponse(
        request,
        "audit/diff.html",
        {
            "principal": principal,
            "environment": name,
            "deploys": deploys,
            "chosen": (from_, to),
            "diff": diff,
            "configuration": rows,
        },
    )
