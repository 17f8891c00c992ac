"""Who is calling, and may they: the server's one authentication and authorisation door.

Every route of the API and the UI depends on `require(resource, action)`. A caller proves
who they are with an API token (`Authorization: Bearer cvy_...`, the users file's hashed
tokens) or a browser session; without one, 401 before anything is read. A known caller
without the role gets 403. Both are answered before the endpoint runs, so neither has a
side effect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from conveyor.approvals.users import Authenticated, authenticate, load_users
from conveyor.server.context import ServerContext, server_context


class Role(StrEnum):
    VIEWER = "viewer"
    DEVELOPER = "developer"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class Action(StrEnum):
    READ = "read"
    CREATE = "create"  # trigger a run
    UPDATE = "update"  # cancel, rerun, set a flag
    APPROVE = "approve"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]
    via: str  # "token" or "session"
    token_id: str | None = None
    identity: Authenticated | None = None  # set when a token proved it


ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ}),
    Role.DEVELOPER: frozenset({Action.READ, Action.CREATE, Action.UPDATE}),
    Role.REVIEWER: frozenset({Action.READ, Action.APPROVE}),
    Role.ADMIN: frozenset(Action),
}


def allowed(principal: Principal, resource: str, action: Action) -> bool:
    """Whether the principal's roles grant `action` on `resource` (the rules file extends
    this per project and environment)."""
    del resource
    return any(
        action in ROLE_ACTIONS.get(Role(role), frozenset())
        for role in principal.roles
        if role in Role.__members__.values()
    )


async def current_principal(
    request: Request, context: Annotated[ServerContext, Depends(server_context)]
) -> Principal:
    """The caller, or 401. A bearer token first; then the session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return await run_in_threadpool(_token_principal, context, token.strip())
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="log in: an API token (Authorization: Bearer) or a browser session",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _token_principal(context: ServerContext, token: str) -> Principal:
    found = authenticate(load_users(context.users_file), token, datetime.now(UTC))
    if not isinstance(found, Authenticated):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=found.refused.reason,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Principal(
        name=found.user.name,
        roles=frozenset(found.user.roles),
        via="token",
        token_id=found.token_id,
        identity=found,
    )


def require(resource: str, action: Action) -> Callable[..., object]:
    """A dependency: the caller, if allowed `action` on `resource`; else 401 or 403."""

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if not allowed(principal, resource, action):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"{principal.name} may not {action.value} {resource}",
            )
        return principal

    return dependency


CSRF_FIELD = "csrf_token"  # the hidden field of every form; or the X-CSRF-Token header


def csrf_token(request: Request) -> str:
    """The token a form of this page must send back (the session's); empty for callers
    that authenticate with a bearer token, which a browser never sends by itself."""
    principal = getattr(request.state, "principal", None)
    return getattr(principal, "csrf", "") or ""
