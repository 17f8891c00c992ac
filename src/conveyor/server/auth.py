"""Who is calling, and may they: the server's one authentication and authorisation door.

Every route of the API and the UI depends on `require(resource, action)`. A caller proves
who they are with an API token (`Authorization: Bearer cvy_...`, the users file's hashed
tokens) or a browser session (the `conveyor_session` cookie, made by /login); without one,
401 (or, for a browser asking for a page, a redirect to /login) before anything is read.
A known caller without the right gets 403. Both are answered before the endpoint runs, so
neither has a side effect, and both are recorded as AUTH_DENIED events (denials.py).

A request authenticated by a session that would change something (POST, PUT, PATCH,
DELETE) must carry the session's CSRF token in the `csrf_token` form field or the
`X-CSRF-Token` header. A bearer token needs none: a browser never sends one by itself.

Rights come from the roles in the users file and the state folder's policy file
(policy.py, Argo CD's form). An endpoint that learns its object (an environment) only
inside calls `authorize(request, resource, action, obj)`.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from conveyor.approvals.model import Refusal, Refused
from conveyor.approvals.users import (
    Authenticated,
    NotAuthenticated,
    authenticate,
    load_users,
    verify_secret,
)
from conveyor.server.context import ServerContext, server_context
from conveyor.server.denials import Denial, record_denial
from conveyor.server.policy import ACTIONS, ANONYMOUS, DEFAULT_POLICY, Policy, PolicyFile
from conveyor.store import sessions


class Role(StrEnum):
    """The built-in roles; what each may do is policy.BUILTIN_ROLE_ACTIONS."""

    VIEWER = "viewer"
    DEVELOPER = "developer"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class Action(StrEnum):
    READ = "read"
    CREATE = "create"  # trigger a run
    UPDATE = "update"  # cancel, rerun, set a flag, deploy
    APPROVE = "approve"
    ADMIN = "admin"


assert tuple(Action) == ACTIONS, "the policy file names the same actions"


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]
    via: str  # "token", "session" or "anonymous" (a public project's reader)
    token_id: str | None = None
    identity: Authenticated | None = None  # set when a token proved it
    csrf: str | None = None  # the session's CSRF token
    groups: frozenset[str] = field(default_factory=frozenset)


SESSION_COOKIE = "conveyor_session"
SESSION_LIFETIME = 12 * 3600.0
CSRF_FIELD = "csrf_token"  # the hidden field of every form; or the X-CSRF-Token header
CSRF_HEADER = "x-csrf-token"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PRINCIPAL_STATE = "principal"  # request.state.principal


def allowed(
    principal: Principal,
    resource: str,
    action: Action,
    obj: str | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> bool:
    """Whether the principal may do `action` on `resource` (and on `obj`, when known)."""
    if principal.via == "anonymous" and action is not Action.READ:
        return False  # a public project is readable, never writable, without a login
    subjects = policy.subjects(principal.name, principal.roles, principal.groups)
    return policy.decide(subjects, resource, action.value, obj)


# --- per-server state --------------------------------------------------------------------

AUTH_PART = "auth"


class VerifiedSecrets:
    """The (secret, stored hash) pairs scrypt has accepted, as SHA-256 digests: an API
    client's every request would otherwise pay ~100 ms of scrypt. Only the slow hash is
    skipped: revocation and expiry are read from the users file at every request, and a
    token issued again has a new salt, so a new stored hash."""

    def __init__(self, size: int = 4096) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def verify(self, secret: str, stored: str) -> bool:
        key = hashlib.sha256(f"{stored}\0{secret}".encode()).hexdigest()
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return True
        if not verify_secret(secret, stored):
            return False
        with self._lock:
            self._seen[key] = None
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
        return True


class AuthState:
    """What authentication keeps per server: the policy file, read again when it changes,
    and the token secrets already verified."""

    def __init__(self, context: ServerContext) -> None:
        from conveyor.server.policy import POLICY_FILENAME

        self.policy_file = PolicyFile(context.project.state_dir / POLICY_FILENAME)
        self.verified = VerifiedSecrets()

    def policy(self) -> Policy:
        return self.policy_file.current()


def auth_state(context: ServerContext) -> AuthState:
    state = context.parts.get(AUTH_PART)
    if not isinstance(state, AuthState):
        state = AuthState(context)
        context.parts[AUTH_PART] = state
    return state


def secure_cookies(context: ServerContext) -> bool:
    return context.public_url.startswith("https://")


# --- who is calling ----------------------------------------------------------------------


async def current_principal(
    request: Request, context: Annotated[ServerContext, Depends(server_context)]
) -> Principal:
    """The caller, or 401. A bearer token first; then the session cookie; then, if the
    project is public, an anonymous reader."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        principal = await run_in_threadpool(_token_principal, context, request, token.strip())
    elif cookie := request.cookies.get(SESSION_COOKIE):
        principal = await run_in_threadpool(_session_principal, context, request, cookie)
        if request.method in _UNSAFE_METHODS:
            await _check_csrf(context, request, principal)
    elif await run_in_threadpool(_is_public, context):
        principal = Principal(ANONYMOUS, frozenset({Role.VIEWER.value}), via="anonymous")
    else:
        await run_in_threadpool(record_denial, context, request, _anonymous_denial())
        raise _login_needed(request)
    setattr(request.state, PRINCIPAL_STATE, principal)
    return principal


def _anonymous_denial() -> Denial:
    return Denial(401, ANONYMOUS, "no credentials", credential=None)


def _is_public(context: ServerContext) -> bool:
    return auth_state(context).policy().is_public()


def _login_needed(request: Request, reason: str | None = None) -> HTTPException:
    """A browser asking for a page goes to the login page; an API caller gets 401."""
    if _wants_page(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return HTTPException(
            status.HTTP_303_SEE_OTHER,
            detail="log in",
            headers={"Location": "/login?next=" + quote(target, safe="")},
        )
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail=reason or "log in: an API token (Authorization: Bearer) or a browser session",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _wants_page(request: Request) -> bool:
    return (
        request.method in ("GET", "HEAD")
        and not request.url.path.startswith("/api/")
        and "text/html" in request.headers.get("accept", "")
    )


def _token_principal(context: ServerContext, request: Request, token: str) -> Principal:
    verify = auth_state(context).verified.verify
    found = authenticate(load_users(context.users_file), token, datetime.now(UTC), verify)
    if not isinstance(found, Authenticated):
        who = found.identity or ANONYMOUS
        denial = Denial(401, who, found.refused.reason, credential="token")
        record_denial(context, request, denial, token_id=found.token_id)
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
        groups=frozenset(found.user.groups),
    )


def _session_principal(context: ServerContext, request: Request, cookie: str) -> Principal:
    session = sessions.find_session(context.store.engine, cookie)
    user = load_users(context.users_file).find(session.user) if session else None
    if session is None or user is None:
        reason = "the session is unknown or expired" if session is None else "no such user"
        who = session.user if session else ANONYMOUS
        record_denial(context, request, Denial(401, who, reason, credential="session"))
        raise _login_needed(request, f"{reason}: log in again")
    return Principal(
        name=user.name,
        roles=frozenset(user.roles),
        via="session",
        csrf=session.csrf,
        groups=frozenset(user.groups),
    )


async def _check_csrf(context: ServerContext, request: Request, principal: Principal) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and _is_form(request):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    expected = principal.csrf or ""
    if sent and expected and hmac.compare_digest(sent.encode(), expected.encode()):
        return
    reason = "the CSRF token is missing" if not sent else "the CSRF token is wrong"
    denial = Denial(403, principal.name, reason, credential="session")
    await run_in_threadpool(record_denial, context, request, denial)
    raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"{reason}: reload the page")


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


# --- may they ----------------------------------------------------------------------------


def require(
    resource: str,
    action: Action,
    obj: str | None = None,
    *,
    object_from: str | None = None,
) -> Callable[..., object]:
    """A dependency: the caller, if allowed `action` on `resource`; else 401 or 403.

    The object is `obj`, or the path parameter named `object_from` (e.g. "environment");
    without either, the caller passes when some rule allows the action on some object,
    and the endpoint checks the object it finds with `authorize`."""

    async def dependency(
        request: Request,
        principal: Annotated[Principal, Depends(current_principal)],
        context: Annotated[ServerContext, Depends(server_context)],
    ) -> Principal:
        target = obj if object_from is None else str(request.path_params.get(object_from, ""))
        await run_in_threadpool(
            partial(
                _authorize,
                context,
                request,
                principal,
                resource=resource,
                action=action,
                obj=target,
            )
        )
        return principal

    return dependency


def authorize(request: Request, resource: str, action: Action, obj: str | None) -> Principal:
    """Inside an endpoint: the caller (set by `require`), if allowed `action` on `obj`;
    else 403 (401 for an anonymous reader), recorded."""
    principal = getattr(request.state, PRINCIPAL_STATE, None)
    if not isinstance(principal, Principal):
        raise RuntimeError("authorize() needs a route that depends on require()")
    context = server_context(request)
    _authorize(context, request, principal, resource=resource, action=action, obj=obj)
    return principal


def may(request: Request, resource: str, action: Action, obj: str | None = None) -> bool:
    """Whether the caller may (for a page to show or hide a button); records nothing."""
    principal = getattr(request.state, PRINCIPAL_STATE, None)
    if not isinstance(principal, Principal):
        return False
    policy = auth_state(server_context(request)).policy()
    return allowed(principal, resource, action, obj, policy)


def _authorize(
    context: ServerContext,
    request: Request,
    principal: Principal,
    *,
    resource: str,
    action: Action,
    obj: str | None,
) -> None:
    if allowed(principal, resource, action, obj, auth_state(context).policy()):
        return
    code = 401 if principal.via == "anonymous" else 403
    what = f"{action.value} {resource}" + (f" {obj}" if obj else "")
    reason = f"{principal.name} may not {what}"
    denial = Denial(code, principal.name, reason, resource, action.value, obj, principal.via)
    record_denial(context, request, denial, token_id=principal.token_id)
    if code == 401:
        raise _login_needed(request, f"log in to {what}")
    raise HTTPException(status.HTTP_403_FORBIDDEN, detail=reason)


def csrf_token(request: Request) -> str:
    """The token a form of this page must send back (the session's); empty for callers
    that authenticate with a bearer token, which a browser never sends by itself."""
    principal = getattr(request.state, PRINCIPAL_STATE, None)
    return getattr(principal, "csrf", "") or ""


def approval_identity(
    context: ServerContext, principal: Principal
) -> Authenticated | NotAuthenticated:
    """Who decides an approval: the token's owner as authenticated; for a browser session,
    the users file's entry of that name (the entry a token of theirs would prove). A login
    that is in no users file decides nothing: refused, and recorded as such."""
    if principal.identity is not None:
        return principal.identity
    user = load_users(context.users_file).find(principal.name)
    if user is None:
        refused = Refused(
            Refusal.UNKNOWN_TOKEN,
            f"{principal.name} is not in the users file, so cannot decide",
            "`conveyor users add` adds them",
        )
        return NotAuthenticated(refused, token_id=None, identity=principal.name)
    return Authenticated(user=user, token_id=principal.token_id or principal.via)
