"""Every refused caller, recorded as an AUTH_DENIED event: who, what, on which object and
why; never the credential itself (a token's id at most).

Callers that present no credential at all could fill the event log for free, so they are
aggregated: the first such 401 is recorded at once, then at most one summary event per
minute carries how many came since (`count`). Callers that present a credential (a
wrong token, a stale session) or are known and lack a right are recorded one by one, up
to `PER_CLIENT_PER_WINDOW` events per client address per minute; more are counted into
the next summary the same way.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from conveyor.server.context import ServerContext
from conveyor.store.records import EventKind

WINDOW = 60.0
PER_CLIENT_PER_WINDOW = 30
DENIALS_PART = "auth.denials"


@dataclass(frozen=True)
class Denial:
    status: int  # 401 or 403
    who: str  # the user, or "anonymous"
    reason: str
    resource: str | None = None
    action: str | None = None
    obj: str | None = None
    credential: str | None = None  # token, session, login-link, oidc; None: none sent


@dataclass
class DenialCounter:
    """Per server: what was refused without being recorded one by one."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    window_start: float = 0.0
    per_client: dict[str, int] = field(default_factory=dict)
    unrecorded: int = 0  # since the last summary
    last_summary: float | None = None
    anonymous_total: int = 0  # since the server started

    def admit(self, denial: Denial, client: str, now: float) -> tuple[bool, int]:
        """Whether to record this denial itself, and how many unrecorded ones a summary
        should report now (0: no summary due)."""
        with self.lock:
            if now - self.window_start >= WINDOW:
                self.window_start, self.per_client = now, {}
            if denial.credential is None:
                self.anonymous_total += 1
                self.unrecorded += 1
                return False, self._summary_due(now)
            seen = self.per_client.get(client, 0) + 1
            self.per_client[client] = seen
            if seen <= PER_CLIENT_PER_WINDOW:
                return True, 0
            self.unrecorded += 1
            return False, self._summary_due(now)

    def _summary_due(self, now: float) -> int:
        if self.last_summary is not None and now - self.last_summary < WINDOW:
            return 0
        count, self.unrecorded, self.last_summary = self.unrecorded, 0, now
        return count


def counter(context: ServerContext) -> DenialCounter:
    found = context.parts.get(DENIALS_PART)
    if not isinstance(found, DenialCounter):
        found = DenialCounter()
        context.parts[DENIALS_PART] = found
    return found


def record_denial(
    context: ServerContext,
    request: Request,
    denial: Denial,
    *,
    token_id: str | None = None,
    path: str | None = None,
) -> None:
    """Record the denial (or count it, see the module's docstring). `path` replaces the
    request's when the path itself holds a secret (a login link)."""
    client = request.client.host if request.client else "unknown"
    record, summary = counter(context).admit(denial, client, time.time())
    where = path or request.url.path
    if record:
        data: dict[str, Any] = {
            "status": denial.status,
            "reason": denial.reason,
            "method": request.method,
            "path": where,
            "resource": denial.resource,
            "action": denial.action,
            "object": denial.obj,
            "credential": denial.credential,
            "token_id": token_id,
            "client": client,
        }
        context.store.record_decision(
            EventKind.AUTH_DENIED,
            actor=denial.who,
            data={k: v for k, v in data.items() if v is not None},
        )
    if summary:
        context.store.record_decision(
            EventKind.AUTH_DENIED,
            actor="anonymous",
            data={
                "status": 401,
                "reason": f"{summary} refused request(s) without credentials, or past "
                f"{PER_CLIENT_PER_WINDOW} a minute from one address, since the last summary",
                "count": summary,
                "aggregated": True,
                "last_path": where,
            },
        )
