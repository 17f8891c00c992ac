"""The approvals HTTP API (`conveyor approvals serve`).

    GET  /runs/{run_id}/approvals   the run's requests and their state
    POST /runs/{run_id}/approve     {"environment": optional, "comment": "..."}
    POST /runs/{run_id}/reject      the same
    GET  /healthz

Every call but /healthz needs `Authorization: Bearer <token>` (the docs too): without a
token whose secret is right, 401 before anything is read or recorded (guard.py). A body is
at most 64 KiB (413). A decision also needs `X-Conveyor-Nonce` (never used before) and
`X-Conveyor-Timestamp` (Unix seconds, within 300 s of the server's clock). A refusal
answers 400 (replay), 401 (token), 403 (not allowed), 404 (no such run or request) or 409
(already decided or expired), with {"error": code, "reason": ..., "hint": ...}, and is
recorded like any other decision. An invalid body answers 422 without echoing it.
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from conveyor.approvals.guard import IDENTITY_STATE, Guard, bearer
from conveyor.approvals.model import ApprovalStatus, Decision, Refusal, Verdict
from conveyor.approvals.users import Authenticated, NotAuthenticated
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.service.approvals import ApprovalRefused, Credentials, run_statuses
from conveyor.service.approvals import decide as decide_run
from conveyor.store.store import Store

DEFAULT_PORT = 4243

HTTP_STATUS: dict[Refusal, int] = {
    Refusal.UNKNOWN_TOKEN: status.HTTP_401_UNAUTHORIZED,
    Refusal.EXPIRED_TOKEN: status.HTTP_401_UNAUTHORIZED,
    Refusal.REVOKED_TOKEN: status.HTTP_401_UNAUTHORIZED,
    Refusal.WRONG_SECRET: status.HTTP_401_UNAUTHORIZED,
    Refusal.REPLAY: status.HTTP_400_BAD_REQUEST,
    Refusal.STALE: status.HTTP_400_BAD_REQUEST,
    Refusal.AMBIGUOUS: status.HTTP_400_BAD_REQUEST,
    Refusal.AUTHOR: status.HTTP_403_FORBIDDEN,
    Refusal.COMMITTER: status.HTTP_403_FORBIDDEN,
    Refusal.TRIGGERER: status.HTTP_403_FORBIDDEN,
    Refusal.NOT_ALLOWED: status.HTTP_403_FORBIDDEN,
    Refusal.NO_RUN: status.HTTP_404_NOT_FOUND,
    Refusal.NO_REQUEST: status.HTTP_404_NOT_FOUND,
    Refusal.ALREADY_DECIDED: status.HTTP_409_CONFLICT,
    Refusal.CLOSED: status.HTTP_409_CONFLICT,
    Refusal.TIMED_OUT: status.HTTP_409_CONFLICT,
    Refusal.RUN_FINISHED: status.HTTP_409_CONFLICT,
}


class DecisionBody(BaseModel):
    environment: str | None = Field(default=None, description="Needed when several wait.")
    comment: str = Field(default="", max_length=2000)


class DecisionView(BaseModel):
    identity: str
    verdict: Verdict
    comment: str
    ts: float


class StatusBody(BaseModel):
    run_id: int
    environment: str
    image: str
    state: str  # an ApprovalState value
    required: int
    approvers: str  # who may approve, in words
    approvals: list[DecisionView]
    rejection: DecisionView | None
    requested_at: float
    timeout_at: float
    not_before: float


class ErrorBody(BaseModel):
    error: str  # a Refusal value, or "server"
    reason: str
    hint: str | None = None


def credentials(
    authorization: Annotated[str | None, Header()] = None,
    x_conveyor_nonce: Annotated[str | None, Header()] = None,
    x_conveyor_timestamp: Annotated[str | None, Header()] = None,
) -> Credentials:
    """A decision's proof of identity and freshness, from its headers."""
    return Credentials(
        bearer(authorization), x_conveyor_nonce, _seconds(x_conveyor_timestamp), "http"
    )


SentCredentials = Annotated[Credentials, Depends(credentials)]


def guarded_identity(request: Request) -> Authenticated | NotAuthenticated:
    """Who the guard authenticated this request as (it refused it otherwise)."""
    identity: Authenticated | NotAuthenticated = getattr(request.state, IDENTITY_STATE)
    return identity


GuardedIdentity = Annotated[Authenticated | NotAuthenticated, Depends(guarded_identity)]


def create_app(store: Store, users_file: Path) -> FastAPI:
    app = FastAPI(title="Conveyor approvals", description="Approval gates (docs/approvals.md).")
    app.add_middleware(Guard, users_file=users_file, error=_error)

    @app.exception_handler(RequestValidationError)
    def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid", _problems(error))

    @app.exception_handler(ApprovalRefused)
    def refused(_request: Request, error: ApprovalRefused) -> JSONResponse:
        return _error(HTTP_STATUS[error.code], error.code.value, error.refused.reason, error.hint)

    @app.exception_handler(ConveyorError)
    def failed(_request: Request, error: ConveyorError) -> JSONResponse:
        if isinstance(error, NotFoundError):
            return _error(status.HTTP_404_NOT_FOUND, Refusal.NO_RUN.value, error.message)
        return _error(status.HTTP_500_INTERNAL_SERVER_ERROR, "server", error.message, error.hint)

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/runs/{run_id}/approvals", responses={401: {"model": ErrorBody}})
    def show(run_id: int, identity: GuardedIdentity) -> list[StatusBody]:
        """Reading needs a valid token too; a refused read is not a decision: not recorded."""
        if not isinstance(identity, Authenticated):
            raise ApprovalRefused(identity.refused)
        return [status_body(found) for found in run_statuses(store, run_id)]

    def decide(
        run_id: int,
        verdict: Verdict,
        body: DecisionBody,
        sent: Credentials,
        identity: Authenticated | NotAuthenticated,
    ) -> StatusBody:
        found = decide_run(
            store,
            users_file,
            run_id,
            verdict,
            sent,
            environment=body.environment,
            comment=body.comment,
            identity=identity,
        )
        return status_body(found)

    responses: dict[int | str, dict[str, object]] = {
        code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409)
    }

    @app.post("/runs/{run_id}/approve", responses=responses)
    def approve(
        run_id: int, body: DecisionBody, sent: SentCredentials, identity: GuardedIdentity
    ) -> StatusBody:
        return decide(run_id, Verdict.APPROVE, body, sent, identity)

    @app.post("/runs/{run_id}/reject", responses=responses)
    def reject(
        run_id: int, body: DecisionBody, sent: SentCredentials, identity: GuardedIdentity
    ) -> StatusBody:
        return decide(run_id, Verdict.REJECT, body, sent, identity)

    return app


def status_body(found: ApprovalStatus) -> StatusBody:
    request = found.request
    return StatusBody(
        run_id=request.run_id,
        environment=request.environment,
        image=request.image,
        state=found.state.value,
        required=request.required,
        approvers=request.approvers(),
        approvals=[_view(d) for d in found.approvals],
        rejection=_view(found.rejection) if found.rejection else None,
        requested_at=request.requested_at,
        timeout_at=request.timeout_at,
        not_before=request.not_before,
    )


def _view(decision: Decision) -> DecisionView:
    return DecisionView(
        identity=decision.identity,
        verdict=decision.verdict,
        comment=decision.comment,
        ts=decision.ts,
    )


def _error(code: int, error: str, reason: str, hint: str | None = None) -> JSONResponse:
    body = ErrorBody(error=error, reason=reason, hint=hint)
    return JSONResponse(status_code=code, content=body.model_dump())


def _problems(error: RequestValidationError) -> str:
    """Where and what, never the input: FastAPI's own answer echoes what was sent."""
    found = [
        f"{'.'.join(str(part) for part in problem.get('loc', ()))}: {problem.get('msg', '')}"
        for problem in error.errors()
    ]
    return "the request is not valid: " + "; ".join(found[:5])


def _seconds(header: str | None) -> float | None:
    """A Unix time; None (refused as stale) when absent or not a number."""
    try:
        return float(header) if header else None
    except ValueError:
        return None


def serve(
    store: Store, users_file: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT
) -> None:
    """Serve the API until interrupted."""
    import uvicorn

    uvicorn.run(create_app(store, users_file), host=host, port=port, log_level="warning")
