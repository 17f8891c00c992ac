"""An environment's business metrics: each release's and flag variant's counters and
ratios with their confidence sequences, compared with the reference (linked from the
environment's page)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from conveyor.observe.business_figures import business_view
from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import formatting, templates

formatting.register()
router = APIRouter(include_in_schema=False)
Reader = Annotated[Principal, Depends(require("environments", Action.READ))]
Context = Annotated[ServerContext, Depends(server_context)]


@router.get("/environments/{name}/business", response_class=HTMLResponse)
def business_page(request: Request, name: str, principal: Reader, context: Context) -> HTMLResponse:
    view = business_view(context.project, context.store, name)
    return templates.TemplateResponse(
        request, "business/environment.html", {"principal": principal, "view": view}
    )
