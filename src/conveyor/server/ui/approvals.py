"""The approvals inbox: what waits for me, each request with its change; approve or reject
with a comment. The decision goes through `service.approvals.decide` with the caller's
identity, so separation of duties holds exactly as in the CLI, and a refusal is recorded
(`approval.refused`) and shown with its reason."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from conveyor.approvals.model import ApprovalStatus, Verdict
from conveyor.approvals.users import Authenticated
from conveyor.server.auth import Action, Principal, approval_identity, require
from conveyor.server.context import ServerContext, server_context
from conveyor.server.ui import formatting, templates
from conveyor.service.approvals import ApprovalRefused, Credentials, decide
from conveyor.service.approvals_inbox import inbox

formatting.register()
router = APIRouter(include_in_schema=False)
Context = Annotated[ServerContext, Depends(server_context)]


@router.get("/approvals", response_class=HTMLResponse)
def approvals_page(
    request: Request,
    principal: Annotated[Principal, Depends(require("approvals", Action.READ))],
    context: Context,
) -> HTMLResponse:
    return _page(request, principal, context)


@router.post("/approvals/decide", response_class=HTMLResponse)
async def decide_from_form(
    request: Request,
    *,
    principal: Annotated[Principal, Depends(require("approvals", Action.APPROVE))],
    context: Context,
    run_id: Annotated[int, Form()],
    environment: Annotated[str, Form()],
    verdict: Annotated[Verdict, Form()],
    comment: Annotated[str, Form(max_length=4000)] = "",
) -> HTMLResponse:
    identity = approval_identity(context, principal)

    def decided() -> ApprovalStatus | ApprovalRefused:
        try:
            return decide(
                context.store,
                context.users_file,
                run_id,
                verdict,
                Credentials.fresh(None, via="web"),
                environment=environment,
                comment=comment,
                identity=identity,
            )
        except ApprovalRefused as refused:
            return refused

    outcome = await run_in_threadpool(decided)
    if isinstance(outcome, ApprovalRefused):
        refused = partial(
            _page, request, principal, context, refused=outcome, code=status.HTTP_403_FORBIDDEN
        )
        return await run_in_threadpool(refused)
    accepted = partial(_page, request, principal, context, accepted=(verdict, outcome))
    return await run_in_threadpool(accepted)


def _page(
    request: Request,
    principal: Principal,
    context: ServerContext,
    *,
    accepted: tuple[Verdict, ApprovalStatus] | None = None,
    refused: ApprovalRefused | None = None,
    code: int = status.HTTP_200_OK,
) -> HTMLResponse:
    identity = approval_identity(context, principal)
    user = identity.user if isinstance(identity, Authenticated) else None
    found = inbox(context.project, context.store, user)
    return templates.TemplateResponse(
        request,
        "approvals/inbox.html",
        {
            "principal": principal,
            "inbox": found,
            "accepted": accepted,
            "refused": refused.refused if refused is not None else None,
        },
        status_code=code,
    )
