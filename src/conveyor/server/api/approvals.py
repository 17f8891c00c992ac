"""Approvals: what waits, a run's requests, and approving or rejecting a deploy.

    GET  /api/v1/approvals?pending=true     every request, newest first
    GET  /api/v1/runs/{id}/approvals        the run's requests
    POST /api/v1/runs/{id}/approve          {"environment"?, "comment"}
    POST /api/v1/runs/{id}/reject           the same

A decision goes through service/approvals.py `decide`, the CLI's way: the ledger enforces
separation of duties (the change's authors, committers and triggerer may not approve) and
the environment's approvers, and records every refusal. Refusals answer with the status
the standalone approvals API uses (server/approvals.py HTTP_STATUS). Items are what
`conveyor approvals ls -o json` prints.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from conveyor.approvals.model import Verdict
from conveyor.server.api.common import ERRORS, Context, ErrorBody, ListBody, everything, reading
from conveyor.server.approvals import HTTP_STATUS
from conveyor.server.auth import Action, Principal, approval_identity, require
from conveyor.service.approvals import ApprovalRefused, Credentials, all_statuses, decide
from conveyor.service.approvals import run_statuses as statuses_of_run
from conveyor.service.jsonable import to_jsonable

router = APIRouter(prefix="/api/v1", tags=["approvals"])
Approver = Annotated[Principal, Depends(require("approvals", Action.APPROVE))]
DECISION_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": ErrorBody, "description": "A replayed nonce, or several requests wait"},
    409: {"model": ErrorBody, "description": "Already decided, expired or closed"},
}


class DecisionBody(BaseModel):
    environment: str | None = Field(default=None, description="Needed when several wait.")
    comment: str = Field(default="", max_length=2000)


@router.get(
    "/approvals",
    response_model=ListBody,
    responses=ERRORS,
    dependencies=reading("approvals"),
    summary="Approval requests, newest first (?pending=true: only those waiting)",
)
def list_approvals(context: Context, pending: Annotated[bool, Query()] = False) -> dict[str, Any]:
    return everything(all_statuses(context.store, pending_only=pending))


@router.get(
    "/runs/{run_id}/approvals",
    response_model=ListBody,
    responses=ERRORS,
    dependencies=reading("approvals"),
    summary="A run's approval requests and their decisions",
)
def run_approvals(run_id: int, context: Context) -> dict[str, Any]:
    return everything(statuses_of_run(context.store, run_id))


@router.post("/runs/{run_id}/approve", responses=DECISION_ERRORS, summary="Approve a deploy")
def approve(
    run_id: int,
    body: DecisionBody,
    context: Context,
    principal: Approver,
    x_conveyor_nonce: Annotated[str | None, Header()] = None,
) -> Any:
    asked = Asked(run_id, Verdict.APPROVE, body, x_conveyor_nonce)
    return _decide(context, principal, asked)


@router.post("/runs/{run_id}/reject", responses=DECISION_ERRORS, summary="Reject a deploy")
def reject(
    run_id: int,
    body: DecisionBody,
    context: Context,
    principal: Approver,
    x_conveyor_nonce: Annotated[str | None, Header()] = None,
) -> Any:
    asked = Asked(run_id, Verdict.REJECT, body, x_conveyor_nonce)
    return _decide(context, principal, asked)


@dataclass(frozen=True)
class Asked:
    run_id: int
    verdict: Verdict
    body: DecisionBody
    nonce: str | None  # the client's, checked against replays; else a new one


def _decide(context: Context, principal: Principal, asked: Asked) -> Any:
    # The caller proved who they are already (a token, or a session).
    sent = Credentials(None, asked.nonce or secrets.token_hex(16), time.time(), "http")
    try:
        found = decide(
            context.store,
            context.users_file,
            asked.run_id,
            asked.verdict,
            sent,
            environment=asked.body.environment,
            comment=asked.body.comment,
            identity=approval_identity(context, principal),
        )
    except ApprovalRefused as refused:
        code, reason = refused.code, refused.refused.reason
        error = ErrorBody(error=code.value, reason=reason, hint=refused.hint)
        return JSONResponse(error.model_dump(), status_code=HTTP_STATUS[code])
    return to_jsonable(found)
