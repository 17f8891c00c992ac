"""May this identity decide this request? Pure functions: a refusal with its reason, or None.

Separation of duties: nobody approves a change they wrote or committed (any commit of it,
not only the newest) or a run they started. Git identities and CONVEYOR_ACTOR are not
authenticated, so an approver matching an author or committer of the change, the run's
actor or the OS account that ran the pipeline, by name or by email, is refused. A rejection only
withdraws a change, so the author and the triggerer may reject.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from email.utils import parseaddr

from conveyor.approvals.model import (
    ApprovalState,
    ApprovalStatus,
    Contributor,
    Part,
    Refusal,
    Refused,
    Verdict,
    human_duration,
)
from conveyor.approvals.users import User

FRESHNESS_WINDOW = 300.0  # seconds an API call's timestamp may be off from now
NONCE_LENGTH = (8, 128)


def may_decide(user: User, verdict: Verdict, status: ApprovalStatus, now: float) -> Refused | None:
    """The first rule `user` breaks by deciding `status`'s request now, or None."""
    return (
        _closed(status, now)
        or (_separation_of_duties(user, status) if verdict is Verdict.APPROVE else None)
        or _not_allowed(user, status)
        or _decided_before(user, status)
    )


def _closed(status: ApprovalStatus, now: float) -> Refused | None:
    request = status.request
    where = f"run {request.run_id} to {request.environment}"
    expired = status.state is ApprovalState.EXPIRED
    if expired or (status.state is ApprovalState.PENDING and now >= request.timeout_at):
        return Refused(
            Refusal.TIMED_OUT,
            f"the request for {where} expired: no approval within "
            f"{human_duration(request.timeout)}",
            "start a new run to ask again",
        )
    if status.state.closed:
        return Refused(Refusal.CLOSED, f"the request for {where} is already {status.state.value}")
    return None


def _separation_of_duties(user: User, status: ApprovalStatus) -> Refused | None:
    request = status.request
    hint = "another person with an allowed role or group must approve"
    if is_author(user, request.author):
        return Refused(
            Refusal.AUTHOR,
            f"{user.name} wrote the change ({request.author}) and cannot approve it",
            hint,
        )
    contributed = _contribution(user, request.contributors)
    if contributed is not None:
        return Refused(contributed[0], contributed[1], hint)
    if is_triggerer(user, (request.actor, request.os_user)):
        return Refused(
            Refusal.TRIGGERER,
            f"{user.name} started run {request.run_id} and cannot approve it",
            hint,
        )
    return None


def _contribution(user: User, contributors: Sequence[Contributor]) -> tuple[Refusal, str] | None:
    """The first commit of the change `user` wrote or committed, as a refusal and its reason.
    Authors first: a newer empty commit on top does not hide who wrote the change."""
    for part in (Part.AUTHOR, Part.COMMITTER):
        for found in contributors:
            if found.part is part and is_author(user, found.identity):
                verb = "wrote" if part is Part.AUTHOR else "committed"
                return (
                    Refusal.AUTHOR if part is Part.AUTHOR else Refusal.COMMITTER,
                    f"{user.name} {verb} commit {found.sha[:12]} ({found.identity}) of "
                    "this change and cannot approve it",
                )
    return None


def _not_allowed(user: User, status: ApprovalStatus) -> Refused | None:
    request = status.request
    if allowed(user, request.roles, request.groups):
        return None
    return Refused(
        Refusal.NOT_ALLOWED,
        f"{user.name} may not decide on {request.environment}: it takes {request.approvers()}",
    )


def _decided_before(user: User, status: ApprovalStatus) -> Refused | None:
    earlier = status.decided_by(user.name)
    if earlier is None:
        return None
    request = status.request
    return Refused(
        Refusal.ALREADY_DECIDED,
        f"{user.name} already decided on run {request.run_id} to {request.environment} "
        f"({earlier.verdict.value}d); each person counts once",
    )


def allowed(user: User, roles: Sequence[str], groups: Sequence[str]) -> bool:
    return bool(set(user.roles) & set(roles)) or bool(set(user.groups) & set(groups))


def is_author(user: User, author: str | None) -> bool:
    """`author` is git's "Name <email>": either part matching the user is enough."""
    if not author:
        return False
    name, email = parseaddr(author)
    return _same(email, user.email) or _same(name, user.name) or _same(author, user.name)


def is_triggerer(user: User, triggered_by: Sequence[str | None]) -> bool:
    return any(_same(who, user.name) or _same(who, user.email) for who in triggered_by)


def check_fresh(nonce: str | None, timestamp: float | None, now: float) -> Refused | None:
    """Replay protection, before anything else: a nonce of a sane length and a timestamp
    within the window (a seen nonce is the ledger's to find)."""
    low, high = NONCE_LENGTH
    if not nonce or not low <= len(nonce) <= high:
        return Refused(
            Refusal.REPLAY,
            f"a decision needs a unique nonce of {low} to {high} characters",
            "send X-Conveyor-Nonce",
        )
    if timestamp is None or not math.isfinite(timestamp) or abs(now - timestamp) > FRESHNESS_WINDOW:
        return Refused(
            Refusal.STALE,
            f"the request's timestamp is not within {FRESHNESS_WINDOW:.0f} s of the server's "
            "clock: refused as a possible replay",
            "send X-Conveyor-Timestamp: the current Unix time in seconds",
        )
    return None


def choose(
    statuses: Sequence[ApprovalStatus], run_id: int, environment: str | None
) -> ApprovalStatus | Refused:
    """The request a decision is about: the one of `environment`, else the only pending one."""
    if environment is not None:
        found = [s for s in statuses if s.request.environment == environment]
        if found:
            return found[-1]
        others = ", ".join(s.request.environment for s in statuses)
        return Refused(
            Refusal.NO_REQUEST,
            f"run {run_id} has no approval request for {environment}"
            + (f" (only for {others})" if others else ""),
        )
    pending = [s for s in statuses if s.state is ApprovalState.PENDING]
    if len(pending) == 1:
        return pending[0]
    if len(pending) > 1:
        names = ", ".join(s.request.environment for s in pending)
        return Refused(
            Refusal.AMBIGUOUS,
            f"run {run_id} waits for approvals to several environments: {names}",
            "name one with --environment",
        )
    if len(statuses) == 1:
        return statuses[0]  # closed: the rules say how
    return Refused(
        Refusal.NO_REQUEST,
        f"run {run_id} has no pending approval request",
        "`conveyor approvals show RUN` lists its requests",
    )


def _same(left: str | None, right: str | None) -> bool:
    return (
        bool(left) and bool(right) and str(left).strip().casefold() == str(right).strip().casefold()
    )
