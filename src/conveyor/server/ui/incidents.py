"""The incidents pages: the list (newest first, open ones marked) and one incident with
its timeline, suspects, their commits, the flag changes, and the buttons that move it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from conveyor.observe import incidents
from conveyor.observe.incidents import NOTE_LIMIT
from conveyor.server.auth import Action, Principal, authorize, may, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import formatting, templates

formatting.register()
router = APIRouter(include_in_schema=False)
Context = Annotated[ServerContext, Depends(server_context)]
Reader = Annotated[Principal, Depends(require("incidents", Action.READ))]
MOVES = {"acknowledge": incidents.acknowledge, "mitigate": incidents.mitigate}


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(
    request: Request,
    principal: Reader,
    context: Context,
    cursor: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    page = incidents.list_incidents(context.store, cursor=cursor)
    return templates.TemplateResponse(
        request, "incidents/list.html", {"principal": principal, "page": page}
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(
    request: Request, incident_id: int, principal: Reader, context: Context
) -> HTMLResponse:
    incident = incidents.get_incident(context.store, incident_id)
    can_move = may(request, "incidents", Action.UPDATE, incident.environment)
    return templates.TemplateResponse(
        request,
        "incidents/show.html",
        {"principal": principal, "incident": incident, "can_move": can_move},
    )


@router.post("/incidents/{incident_id}/{transition}")
async def move_from_form(
    request: Request,
    incident_id: int,
    transition: str,
    *,
    principal: Annotated[Principal, Depends(require("incidents", Action.UPDATE))],
    context: Context,
    note: Annotated[str, Form(max_length=NOTE_LIMIT)] = "",
) -> RedirectResponse:
    if transition not in (*MOVES, "resolve"):
        raise HTTPException(404, detail=f"no transition {transition[:40]!r}")
    incident = await run_in_threadpool(incidents.get_incident, context.store, incident_id)
    await run_in_threadpool(authorize, request, "incidents", Action.UPDATE, incident.environment)
    said = note or None
    if transition == "resolve":
        await run_in_threadpool(
            incidents.resolve, context.project, context.store, incident_id, principal.name, said
        )
    else:
        move = MOVES[transition]
        await run_in_threadpool(move, context.store, incident_id, principal.name, said)
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)
