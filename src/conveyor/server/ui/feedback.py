"""An environment's user feedback: ratings per release and per flag variant with their
confidence sequences, rating drops, the themes of low ratings and the latest posts,
updated live when the watch ingests new posts (`feedback.received`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from conveyor.observe.feedback import environment_feedback
from conveyor.server.auth import Action, Principal, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import formatting, templates

formatting.register()
router = APIRouter(include_in_schema=False)
Reader = Annotated[Principal, Depends(require("environments", Action.READ))]
Context = Annotated[ServerContext, Depends(server_context)]
LATEST_SHOWN = 50


@router.get("/environments/{environment}/feedback", response_class=HTMLResponse)
def feedback_page(
    request: Request,
    environment: str,
    principal: Reader,
    context: Context,
    release: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    report = environment_feedback(
        context.project,
        context.store,
        environment,
        release_id=release or None,
        with_themes=True,
        latest=LATEST_SHOWN,
    )
    return templates.TemplateResponse(
        request,
        "environments/feedback.html",
        {"principal": principal, "environment": environment, "report": report, "release": release},
    )
