"""Incidents (observe/incidents.py), as `conveyor incidents ... -o json` shows them.

GET  /api/v1/incidents?environment=&state=&limit=&cursor=   newest first
GET  /api/v1/incidents/{id}                                  with its timeline
POST /api/v1/incidents/{id}/acknowledge|mitigate|resolve     {"note"?}
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from conveyor.observe import incidents
from conveyor.observe.incidents import NOTE_LIMIT, Incident
from conveyor.server.api.common import (
    ERRORS,
    Context,
    Cursor,
    Limit,
    ListBody,
    listed,
    reading,
    to_jsonable,
)
from conveyor.server.auth import Action, Principal, authorize, require

RESOURCE = "incidents"
router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"], responses=ERRORS)
Changer = Annotated[Principal, Depends(require(RESOURCE, Action.UPDATE))]


class Transition(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    MITIGATE = "mitigate"
    RESOLVE = "resolve"


class NoteBody(BaseModel):
    note: str | None = Field(default=None, max_length=NOTE_LIMIT)


@router.get("", response_model=ListBody, dependencies=reading(RESOURCE))
def list_incidents(
    context: Context,
    limit: Limit = None,
    cursor: Cursor = None,
    environment: Annotated[str | None, Query()] = None,
    state: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    """Incidents, newest first (without their timelines)."""
    page = incidents.list_incidents(
        context.store, environment=environment, state=state or (), limit=limit, cursor=cursor
    )
    return listed(page)


@router.get("/{incident_id}", dependencies=reading(RESOURCE))
def show_incident(incident_id: int, context: Context) -> dict[str, Any]:
    """One incident with its timeline, suspects and flag changes."""
    return _json(incidents.get_incident(context.store, incident_id))


@router.post("/{incident_id}/{transition}")
async def move_incident(
    incident_id: int,
    transition: Transition,
    *,
    request: Request,
    principal: Changer,
    context: Context,
    body: NoteBody | None = None,
) -> dict[str, Any]:
    """acknowledge, mitigate or resolve (which files the follow-up requirement)."""
    incident = await run_in_threadpool(incidents.get_incident, context.store, incident_id)
    await run_in_threadpool(authorize, request, RESOURCE, Action.UPDATE, incident.environment)
    note = body.note if body else None
    store, actor = context.store, principal.name
    if transition is Transition.ACKNOWLEDGE:
        moved = await run_in_threadpool(incidents.acknowledge, store, incident_id, actor, note)
    elif transition is Transition.MITIGATE:
        moved = await run_in_threadpool(incidents.mitigate, store, incident_id, actor, note)
    else:
        project = context.project
        moved = await run_in_threadpool(incidents.resolve, project, store, incident_id, actor, note)
    return _json(moved)


def _json(incident: Incident) -> dict[str, Any]:
    found: dict[str, Any] = to_jsonable(incident)
    return found
