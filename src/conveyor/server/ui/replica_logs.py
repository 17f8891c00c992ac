"""An environment's replica logs: the filters as a form, a page of lines newest first,
and a link to the older ones (the API's cursor)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from conveyor.errors import ConveyorError
from conveyor.observe.replica_logs import LEVELS, LogPage, read_logs
from conveyor.server.api.replica_logs import log_query
from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import formatting, templates
from conveyor.service import environments as service

formatting.register()
router = APIRouter(include_in_schema=False)
Reader = Annotated[Principal, Depends(require("environments", Action.READ))]
Context = Annotated[ServerContext, Depends(server_context)]


@router.get("/environments/{name}/logs", response_class=HTMLResponse)
def logs_page(
    request: Request,
    name: str,
    principal: Reader,
    context: Context,
    *,
    release: str | None = None,
    grep: str | None = None,
    since: str | None = None,
    level: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    service.environment_spec(context.project, name)  # 404 for an unknown one
    problem = None
    try:
        query = log_query(
            release=release, grep=grep, since=since, level=level, limit=100, cursor=cursor
        )
        page = read_logs(context.project, context.store, name, query)
    except ConveyorError as error:  # a bad filter: said on the page, the form kept
        problem, page = error.message, LogPage([], None)
    filters = {"release": release, "grep": grep, "since": since, "level": level}
    return templates.TemplateResponse(
        request,
        "replica_logs/logs.html",
        {
            "principal": principal,
            "environment": name,
            "page": page,
            "filters": {key: value or "" for key, value in filters.items()},
            "levels": LEVELS,
            "problem": problem,
        },
        status_code=400 if problem else 200,
    )
