"""The approvals API's front door: a caller who proves no token is turned away before the
application reads a byte of the body, validates anything or writes anything.

- Every path but /healthz needs `Authorization: Bearer <token>` whose secret is right.
  Without one, 401 and nothing recorded: anonymous callers cannot fill the event log and
  the audit chain. A revoked or expired token (its secret right) goes on to the decision,
  which refuses it and records the use; the docs (/docs, /openapi.json) need a valid one.
- A body larger than `max_body` bytes is refused with 413 before it is parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

from fastapi import status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.approvals.model import Refusal
from conveyor.approvals.users import (
    Authenticated,
    NotAuthenticated,
    authenticate,
    load_users,
)
from conveyor.errors import ConveyorError

MAX_BODY = 64 * 1024
PUBLIC_PATHS = frozenset({"/healthz"})
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
# Where a passed request's identity waits for the endpoint (`request.state.identity`), so
# the token's scrypt hash is checked once per request.
IDENTITY_STATE = "identity"
# The secret was right: the token's holder is known, so the refusal is theirs to record.
_PROVEN = frozenset({Refusal.REVOKED_TOKEN, Refusal.EXPIRED_TOKEN})

ErrorResponse = Callable[[int, str, str, str | None], JSONResponse]


class Guard:
    """ASGI middleware: authentication, then the body's size, then the application."""

    def __init__(
        self, app: ASGIApp, *, users_file: Path, error: ErrorResponse, max_body: int = MAX_BODY
    ) -> None:
        self.app = app
        self.users_file = users_file
        self.error = error
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization")
        checked = await run_in_threadpool(self._check, scope["path"], authorization)
        if isinstance(checked, JSONResponse):
            await checked(scope, receive, send)
            return
        scope.setdefault("state", {})[IDENTITY_STATE] = checked
        body = await _read_body(receive, self.max_body)
        if body is None:
            too_large = self.error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "too-large",
                f"the request body is larger than {self.max_body // 1024} KiB",
                None,
            )
            await too_large(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check(
        self, path: str, authorization: str | None
    ) -> JSONResponse | Authenticated | NotAuthenticated:
        """The refusal to send, or the identity the endpoint acts for."""
        try:
            users = load_users(self.users_file)
        except ConveyorError:  # its details are for the server's owner, not the caller
            return self.error(
                status.HTTP_500_INTERNAL_SERVER_ERROR,
                "server",
                "the approvals server cannot read its users file",
                "its owner sees why in `conveyor users ls`",
            )
        identity = authenticate(users, bearer(authorization) or "", datetime.now(UTC))
        if isinstance(identity, Authenticated):
            return identity
        if identity.refused.code in _PROVEN and path not in DOCS_PATHS:
            return identity
        reason = identity.refused.reason if authorization else "no token"
        hint = "send Authorization: Bearer <your token>"
        return self.error(status.HTTP_401_UNAUTHORIZED, identity.refused.code.value, reason, hint)


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.casefold() == "bearer" else None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client left
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body, read already, handed to the application as one message."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
