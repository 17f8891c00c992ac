"""Logging in and out of the web UI: a session from an API token, a one-time login link
or OpenID Connect.

    GET  /login                  the page: paste a token, or log in with OpenID Connect
    POST /login                  token -> a session cookie
    POST /logout                 ends the session (CSRF token needed, like every form)
    GET  /login/link/{secret}    a one-time login link (the first admin's) -> a session
    GET  /login/oidc             -> the provider (code flow, PKCE, state, nonce)
    GET  /login/oidc/callback    the provider's answer -> a session

The login form is protected against login CSRF (another site logging the browser in as
someone else) by a double-submitted value: a SameSite=Strict cookie set with the page and
the form's hidden field must match.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlsplit

import httpx
import python_multipart  # noqa: F401  (FastAPI's Form() needs it: fail at start, not at login)
from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from conveyor.approvals.users import Authenticated, add_user, authenticate, load_users
from conveyor.errors import ConveyorError
from conveyor.server import oidc
from conveyor.server.auth import (
    SESSION_COOKIE,
    SESSION_LIFETIME,
    Principal,
    current_principal,
    secure_cookies,
)
from conveyor.server.context import ServerContext, server_context
from conveyor.server.denials import Denial, record_denial
from conveyor.server.ui import templates
from conveyor.store import sessions

router = APIRouter(include_in_schema=False)

LOGIN_COOKIE = "conveyor_login"  # the login form's double-submitted value
LOGIN_LINK_LIFETIME = 3600.0
Context = Annotated[ServerContext, Depends(server_context)]


def safe_next(value: str | None) -> str:
    """`value` if it is a path on this server, else "/": never an open redirect."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or c == "\\" for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, context: Context, next: str | None = None) -> Response:
    return _login_form(request, context, safe_next(next), None, 200)


def _login_form(
    request: Request, context: ServerContext, next_path: str, error: str | None, code: int
) -> Response:
    nonce = sessions.new_secret()
    try:
        has_oidc = oidc.load_settings(context.project.state_dir) is not None
    except ConveyorError as broken:  # a token still logs in
        has_oidc, error = False, error or f"OpenID Connect is unavailable: {broken.message}"
    page = templates.TemplateResponse(
        request,
        "login/login.html",
        {
            "principal": None,
            "login_nonce": nonce,
            "next": next_path,
            "error": error,
            "oidc": has_oidc,
        },
        status_code=code,
    )
    page.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path="/login",
        httponly=True,
        secure=secure_cookies(context),
        samesite="strict",
    )
    return page


@router.post("/login")
def login(
    request: Request,
    context: Context,
    token: Annotated[str, Form()] = "",
    login_nonce: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    next_path = safe_next(next)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not (expected and hmac.compare_digest(expected.encode(), login_nonce.encode())):
        denial = Denial(403, "anonymous", "the login form came from elsewhere", credential="form")
        record_denial(context, request, denial)
        return _login_form(request, context, next_path, "Reload this page and log in again.", 403)
    found = authenticate(load_users(context.users_file), token, datetime.now(UTC))
    if not isinstance(found, Authenticated):
        who = found.identity or "anonymous"
        denial = Denial(401, who, found.refused.reason, credential="token")
        record_denial(context, request, denial, token_id=found.token_id)
        return _login_form(request, context, next_path, found.refused.reason, 401)
    return start_session(context, found.user.name, "token", next_path)


def start_session(context: ServerContext, user: str, via: str, next_path: str) -> Response:
    """A new session for `user`: its cookie set, the browser sent on to `next_path`."""
    secret, _ = sessions.create_session(context.store.engine, user, via, SESSION_LIFETIME)
    answer = RedirectResponse(next_path, status_code=303)
    answer.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(SESSION_LIFETIME),
        path="/",
        httponly=True,
        secure=secure_cookies(context),
        samesite="lax",  # sent when following a link here, never on another site's POST
    )
    answer.delete_cookie(LOGIN_COOKIE, path="/login")
    return answer


@router.post("/logout")
async def logout(
    request: Request,
    context: Context,
    principal: Annotated[Principal, Depends(current_principal)],
) -> Response:
    """The session ends here and in the store (a copied cookie is no use after)."""
    del principal  # logged in, and the CSRF token checked, by the dependency
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await run_in_threadpool(sessions.revoke_session, context.store.engine, cookie)
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(SESSION_COOKIE, path="/")
    return answer


# --- one-time login links ---------------------------------------------------------------------


@router.get("/login/link/{secret}", response_class=HTMLResponse)
def login_link(request: Request, secret: str, context: Context) -> Response:
    use = sessions.consume_login_link(context.store.engine, secret)
    known = use.user is not None and load_users(context.users_file).find(use.user) is not None
    if use.refused is None and use.user is not None and known:
        return start_session(context, use.user, "login-link", "/")
    reasons = {
        sessions.LinkRefusal.USED: "This login link was used already: each link works once.",
        sessions.LinkRefusal.EXPIRED: "This login link has expired.",
        sessions.LinkRefusal.UNKNOWN: "This login link is not known.",
    }
    gone = "The user of this link is gone."
    reason = reasons[use.refused] if use.refused else gone
    why = use.refused.value if use.refused else "user gone"
    denial = Denial(410, use.user or "anonymous", f"login link {why}", credential="login-link")
    record_denial(context, request, denial, path="/login/link/…")
    return _refused(request, "Login link refused", reason, 410)


def _refused(request: Request, title: str, reason: str, code: int) -> Response:
    return templates.TemplateResponse(
        request,
        "login/refused.html",
        {"principal": None, "title": title, "reason": reason},
        status_code=code,
    )


def first_admin_link(context: ServerContext, name: str | None = None) -> tuple[str, str]:
    """The first admin's one-time login link (valid 1 h): `name` (default `admin`) is made
    an admin user when the users file has no admin yet. Returns (user, link)."""
    users = load_users(context.users_file)
    admins = [u for u in users.users if "admin" in u.roles]
    chosen = name or (admins[0].name if admins else "admin")
    user = users.find(chosen)
    if user is None and not admins:
        user = add_user(context.users_file, chosen, f"{chosen}@localhost", ["admin"], [])
    if user is None or "admin" not in user.roles:
        raise ConveyorError(
            f"{chosen} is not an admin in {context.users_file}",
            hint="name an admin with --admin, or give them the role in the users file",
        )
    secret = sessions.create_login_link(context.store.engine, user.name, LOGIN_LINK_LIFETIME)
    return user.name, context.url(f"/login/link/{secret}")


# --- OpenID Connect ------------------------------------------------------------------------


@router.get("/login/oidc")
async def oidc_login(request: Request, context: Context, next: str | None = None) -> Response:
    settings = oidc.load_settings(context.project.state_dir)
    if settings is None:
        return _refused(
            request, "No OpenID Connect", "This server has no OpenID Connect provider.", 404
        )
    try:
        provider = await oidc.discover(settings)
    except (ConveyorError, httpx.HTTPError, KeyError, ValueError) as error:
        return _refused(request, "No OpenID Connect", f"The provider is unavailable: {error}", 502)
    url, pending = oidc.authorization_url(
        settings, provider, context.url(oidc.CALLBACK_PATH), safe_next(next)
    )
    answer = RedirectResponse(url, status_code=303)
    answer.set_cookie(
        oidc.FLOW_COOKIE,
        pending.encode(),
        max_age=oidc.FLOW_LIFETIME,
        path="/login/oidc",
        httponly=True,
        secure=secure_cookies(context),
        samesite="lax",  # it must come back with the provider's top-level redirect
    )
    return answer


@router.get(oidc.CALLBACK_PATH)
async def oidc_callback(
    request: Request,
    context: Context,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> Response:
    settings = oidc.load_settings(context.project.state_dir)
    pending = oidc.PendingLogin.decode(request.cookies.get(oidc.FLOW_COOKIE, ""))
    if settings is None or pending is None or not state or not code:
        why = f"the provider answered {error}" if error else "no login was started here"
        return await _oidc_refused(request, context, "anonymous", why)
    if not hmac.compare_digest(state.encode(), pending.state.encode()):
        return await _oidc_refused(request, context, "anonymous", "the state does not match")
    redirect_uri = context.url(oidc.CALLBACK_PATH)
    try:
        provider = await oidc.discover(settings)
        claims = await oidc.exchange(settings, provider, code, redirect_uri, pending)
    except ConveyorError as refused:
        return await _oidc_refused(request, context, "anonymous", refused.message)
    except (httpx.HTTPError, KeyError, ValueError) as problem:
        return _refused(request, "Login failed", f"The provider is unavailable: {problem}", 502)
    users = await run_in_threadpool(load_users, context.users_file)
    user = oidc.user_for(users, claims)
    if user is None:
        who = oidc.identity_of(claims)
        return await _oidc_refused(request, context, who, f"{who} is not a user of this server")
    answer = await run_in_threadpool(start_session, context, user.name, "oidc", pending.next)
    answer.delete_cookie(oidc.FLOW_COOKIE, path="/login/oidc")
    return answer


async def _oidc_refused(
    request: Request, context: ServerContext, who: str, reason: str
) -> Response:
    denial = Denial(403, who, reason, credential="oidc")
    await run_in_threadpool(record_denial, context, request, denial)
    page = _refused(request, "Login refused", reason, 403)
    page.delete_cookie(oidc.FLOW_COOKIE, path="/login/oidc")
    return page
