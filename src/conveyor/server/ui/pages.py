"""The UI's front page. Each area of the UI (runs, logs, releases, approvals, flags, audit)
is a module of its own beside this one, with its templates under templates/<area>/."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import templates

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    principal: Annotated[Principal, Depends(require("project", Action.READ))],
    context: Annotated[ServerContext, Depends(server_context)],
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "home.html",
        {"principal": principal, "project": context.project.directory.name},
    )
