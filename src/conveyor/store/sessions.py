"""Browser sessions and one-time login links in the store (tables `sessions`, `login_links`).

Only a SHA-256 of each secret is kept: the secrets are 256 random bits, so a plain digest
is as good as a slow hash, and a stolen database opens no session. A session carries its
own CSRF token (not a secret from its browser, only from other sites).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa

from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.schema import login_links, sessions


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Session:
    id_hash: str
    user: str
    via: str  # token, oidc, login-link
    csrf: str
    created_at: float
    expires_at: float


def create_session(engine: sa.Engine, user: str, via: str, lifetime: float) -> tuple[str, Session]:
    """A new session; returns the cookie's secret (shown once) and the session."""
    secret = new_secret()
    now = time.time()
    session = Session(digest(secret), user, via, new_secret(), now, now + lifetime)
    with write_transaction(engine) as conn:
        conn.execute(
            sa.insert(sessions).values(
                id_hash=session.id_hash,
                user=user,
                via=via,
                csrf=session.csrf,
                created_at=session.created_at,
                expires_at=session.expires_at,
            )
        )
        # Expired sessions are of no use to anyone: sweep them as new ones start.
        conn.execute(sa.delete(sessions).where(sessions.c.expires_at < now))
    return secret, session


def find_session(engine: sa.Engine, secret: str) -> Session | None:
    """The live session this cookie's secret opens, if any (not expired, not revoked)."""
    with read_transaction(engine) as conn:
        row = conn.execute(sa.select(sessions).where(sessions.c.id_hash == digest(secret))).first()
    if row is None or row.revoked_at is not None or row.expires_at <= time.time():
        return None
    return Session(row.id_hash, row.user, row.via, row.csrf, row.created_at, row.expires_at)


def revoke_session(engine: sa.Engine, secret: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            sa.update(sessions)
            .where(sessions.c.id_hash == digest(secret), sessions.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )


def create_login_link(engine: sa.Engine, user: str, lifetime: float) -> str:
    """A one-time login link's secret for `user`, valid for `lifetime` seconds."""
    secret = new_secret()
    now = time.time()
    with write_transaction(engine) as conn:
        conn.execute(
            sa.insert(login_links).values(
                id_hash=digest(secret), user=user, created_at=now, expires_at=now + lifetime
            )
        )
    return secret


class LinkRefusal(StrEnum):
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True)
class LinkUse:
    user: str | None  # whose link it is, when known
    refused: LinkRefusal | None  # None: consumed now, by this call


def consume_login_link(engine: sa.Engine, secret: str) -> LinkUse:
    """Use the link once: the first call for a live link gets its user; every later call,
    and any call after it expired, is refused (one transaction, so two at once cannot
    both win)."""
    now = time.time()
    with write_transaction(engine) as conn:
        row = conn.execute(
            sa.select(login_links).where(login_links.c.id_hash == digest(secret))
        ).first()
        if row is None:
            return LinkUse(None, LinkRefusal.UNKNOWN)
        if row.used_at is not None:
            return LinkUse(row.user, LinkRefusal.USED)
        if row.expires_at <= now:
            return LinkUse(row.user, LinkRefusal.EXPIRED)
        updated = conn.execute(
            sa.update(login_links)
            .where(login_links.c.id_hash == row.id_hash, login_links.c.used_at.is_(None))
            .values(used_at=now)
        )
        if updated.rowcount != 1:
            return LinkUse(row.user, LinkRefusal.USED)
    return LinkUse(row.user, None)
