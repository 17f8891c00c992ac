"""Approval requests and decisions over the event log; one short transaction per call.

Every event here is of an audited kind, so each request, decision, refusal and expiry is
chained into the audit log in the same transaction. A decision is judged and recorded in
one write transaction: two approvers at once cannot both be the last one needed, and a
nonce is never accepted twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from conveyor.approvals import rules
from conveyor.approvals.model import (
    ApprovalRequest,
    ApprovalState,
    ApprovalStatus,
    Change,
    Contributor,
    Decision,
    Part,
    Refusal,
    Refused,
    Verdict,
    fold,
    human_duration,
)
from conveyor.approvals.users import User
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.store import events as event_log
from conveyor.store import runs
from conveyor.store.db import read_transaction, serialize_on, write_transaction
from conveyor.store.records import EventKind, RunRecord
from conveyor.store.schema import events
from conveyor.store.schema import runs as runs_table

_DECISION_KINDS = (EventKind.APPROVAL_GRANTED.value, EventKind.APPROVAL_REJECTED.value)
_NONCE_KINDS = (*_DECISION_KINDS, EventKind.APPROVAL_REFUSED.value)


@dataclass(frozen=True)
class NewRequest:
    run_id: int
    environment: str
    repository: str
    digest: str
    required: int
    roles: tuple[str, ...]
    groups: tuple[str, ...]
    timeout: float
    wait_timer: float
    os_user: str | None
    change: Change | None = None  # None: the run has no commit to count from


@dataclass(frozen=True)
class Attempt:
    """One approve or reject, as it arrived; `user` is None when authentication failed."""

    run_id: int
    environment: str | None
    verdict: Verdict
    comment: str
    nonce: str | None
    timestamp: float | None
    via: str  # "cli" or "http"
    user: User | None
    token_id: str | None
    auth_refusal: Refused | None = None
    identity_hint: str | None = None  # the token's owner when its secret was wrong


class ApprovalLedger:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # --- requests ---------------------------------------------------------------------

    def request(self, new: NewRequest, now: float | None = None) -> ApprovalRequest:
        """The run's request for the environment, recorded now if it has none (idempotent)."""
        now = time.time() if now is None else now
        with write_transaction(self.engine) as conn:
            serialize_on(conn, events)
            found = _requests(conn, run_id=new.run_id, environment=new.environment)
            if found:
                if found[-1].digest != new.digest:
                    raise ConveyorError(
                        f"run {new.run_id} already asked to deploy {found[-1].image} to "
                        f"{new.environment}: one approval request per run and environment"
                    )
                return found[-1]
            run = runs.select_run(conn, new.run_id)
            row = event_log.event_row(
                EventKind.APPROVAL_REQUESTED,
                now,
                run_id=new.run_id,
                commit_sha=run.commit_sha,
                actor=run.actor,
                data=_request_data(new, run, now),
            )
            event_id = event_log.append_one(conn, row)
            return _request_from(event_id, row)

    def requests(
        self,
        *,
        run_id: int | None = None,
        environment: str | None = None,
        digest: str | None = None,
    ) -> list[ApprovalRequest]:
        """Oldest first."""
        with read_transaction(self.engine) as conn:
            return _requests(conn, run_id=run_id, environment=environment, digest=digest)

    def statuses(
        self,
        now: float,
        *,
        run_id: int | None = None,
        environment: str | None = None,
        digest: str | None = None,
    ) -> list[ApprovalStatus]:
        with read_transaction(self.engine) as conn:
            found = _requests(conn, run_id=run_id, environment=environment, digest=digest)
            return [_status(conn, request, now) for request in found]

    def status(self, request: ApprovalRequest, now: float) -> ApprovalStatus:
        with read_transaction(self.engine) as conn:
            return _status(conn, request, now)

    def expire(self, request: ApprovalRequest, now: float) -> ApprovalStatus:
        """Record the expiry of a request past its timeout (once); its status either way."""
        with write_transaction(self.engine) as conn:
            serialize_on(conn, events)
            _record_expiry(conn, request, now)
            return _status(conn, request, now)

    # --- decisions --------------------------------------------------------------------

    def decide(self, attempt: Attempt, now: float) -> ApprovalStatus | Refused:
        """Judge the attempt and record it: the decision (and the new status), or the refusal."""
        with write_transaction(self.engine) as conn:
            serialize_on(conn, events)
            judged = _judge(conn, attempt, now)
            if isinstance(judged, tuple):
                refused, status = judged
                _record_refusal(conn, attempt, refused, status, now)
                if refused.code is Refusal.TIMED_OUT and status is not None:
                    _record_expiry(conn, status.request, now)
                return refused
            _record_decision(conn, attempt, judged, now)
            return _status(conn, judged.request, now)


# --- judging ------------------------------------------------------------------------------

_Judged = ApprovalStatus | tuple[Refused, ApprovalStatus | None]


def _judge(conn: sa.Connection, attempt: Attempt, now: float) -> _Judged:
    """The status to record a decision on, or the refusal (with the request when known).
    Replay first, then the identity, then the run and request, then the rules."""
    stale = rules.check_fresh(attempt.nonce, attempt.timestamp, now)
    if stale is not None:
        return stale, None
    if attempt.nonce is not None and _nonce_seen(conn, attempt.nonce):
        return Refused(Refusal.REPLAY, "this nonce was used before: refused as a replay"), None
    if attempt.user is None:
        assert attempt.auth_refusal is not None
        return attempt.auth_refusal, None
    try:
        run = runs.select_run(conn, attempt.run_id)
    except NotFoundError:
        return Refused(Refusal.NO_RUN, f"run {attempt.run_id} does not exist"), None
    chosen = rules.choose(
        [_status(conn, r, now) for r in _requests(conn, run_id=run.id)],
        run.id,
        attempt.environment,
    )
    if isinstance(chosen, Refused):
        return chosen, None
    refused = rules.may_decide(attempt.user, attempt.verdict, chosen, now)
    if refused is None and run.state.finished and not chosen.state.closed:
        refused = Refused(
            Refusal.RUN_FINISHED,
            f"run {run.id} is {run.state.value}: its deploy no longer waits for a decision",
            "start a new run to ask again",
        )
    return chosen if refused is None else (refused, chosen)


def _nonce_seen(conn: sa.Connection, nonce: str) -> bool:
    query = sa.select(events.c.id).where(
        events.c.kind.in_(_NONCE_KINDS), events.c.data["nonce"].as_string() == nonce
    )
    return conn.execute(query.limit(1)).first() is not None


# --- recording ----------------------------------------------------------------------------


def _record_decision(
    conn: sa.Connection, attempt: Attempt, status: ApprovalStatus, now: float
) -> None:
    assert attempt.user is not None
    request, user = status.request, attempt.user
    kind = (
        EventKind.APPROVAL_GRANTED
        if attempt.verdict is Verdict.APPROVE
        else EventKind.APPROVAL_REJECTED
    )
    data = {
        "request_id": request.id,
        "environment": request.environment,
        "digest": request.digest,
        "identity": user.name,
        "email": user.email,
        "roles": list(user.roles),
        "groups": list(user.groups),
        "comment": attempt.comment,
        "token_id": attempt.token_id,
        "nonce": attempt.nonce,
        "via": attempt.via,
    }
    row = event_log.event_row(kind, now, run_id=request.run_id, actor=user.name, data=data)
    event_log.append_one(conn, row)


def _record_refusal(
    conn: sa.Connection,
    attempt: Attempt,
    refused: Refused,
    status: ApprovalStatus | None,
    now: float,
) -> None:
    identity = attempt.user.name if attempt.user else attempt.identity_hint
    exists = conn.execute(
        sa.select(runs_table.c.id).where(runs_table.c.id == attempt.run_id)
    ).first()
    data = {
        "run_id": attempt.run_id,
        "request_id": status.request.id if status else None,
        "environment": status.request.environment if status else attempt.environment,
        "verdict": attempt.verdict,
        "identity": identity,
        "token_id": attempt.token_id,
        "code": refused.code,
        "reason": refused.reason,
        "comment": attempt.comment,
        "nonce": attempt.nonce,
        "via": attempt.via,
    }
    row = event_log.event_row(
        EventKind.APPROVAL_REFUSED,
        now,
        run_id=attempt.run_id if exists else None,
        actor=identity,
        data=data,
    )
    event_log.append_one(conn, row)


def _record_expiry(conn: sa.Connection, request: ApprovalRequest, now: float) -> None:
    if _expiry_of(conn, request.id) is not None:
        return  # recorded before
    status = _status(conn, request, now)
    if status.state is not ApprovalState.EXPIRED:
        return
    data = {
        "request_id": request.id,
        "environment": request.environment,
        "digest": request.digest,
        "timeout_at": request.timeout_at,
        "approvals": len(status.approvals),
        "required": request.required,
        "reason": "no approval within " + human_duration(request.timeout),
    }
    row = event_log.event_row(
        EventKind.APPROVAL_EXPIRED, now, run_id=request.run_id, actor="conveyor", data=data
    )
    event_log.append_one(conn, row)


# --- reading ------------------------------------------------------------------------------


def _requests(
    conn: sa.Connection,
    *,
    run_id: int | None = None,
    environment: str | None = None,
    digest: str | None = None,
) -> list[ApprovalRequest]:
    query = sa.select(events).where(events.c.kind == EventKind.APPROVAL_REQUESTED.value)
    if run_id is not None:
        query = query.where(events.c.run_id == run_id)
    if environment is not None:
        query = query.where(events.c.data["environment"].as_string() == environment)
    if digest is not None:
        query = query.where(events.c.data["digest"].as_string() == digest)
    rows = conn.execute(query.order_by(events.c.id))
    return [_request_from(row.id, dict(row._mapping)) for row in rows]


def _status(conn: sa.Connection, request: ApprovalRequest, now: float) -> ApprovalStatus:
    query = (
        sa.select(events)
        .where(
            events.c.kind.in_(_DECISION_KINDS),
            events.c.data["request_id"].as_integer() == request.id,
        )
        .order_by(events.c.id)
    )
    decisions = [_decision_from(dict(row._mapping)) for row in conn.execute(query)]
    return fold(request, decisions, _expiry_of(conn, request.id), now)


def _expiry_of(conn: sa.Connection, request_id: int) -> float | None:
    query = sa.select(events.c.ts).where(
        events.c.kind == EventKind.APPROVAL_EXPIRED.value,
        events.c.data["request_id"].as_integer() == request_id,
    )
    found = conn.execute(query.order_by(events.c.id).limit(1)).scalar()
    return None if found is None else float(found)


def _request_data(new: NewRequest, run: RunRecord, now: float) -> dict[str, Any]:
    return {
        "run_id": new.run_id,
        "environment": new.environment,
        "repository": new.repository,
        "digest": new.digest,
        "author": run.author,
        "actor": run.actor,
        "os_user": new.os_user,
        "required": new.required,
        "roles": list(new.roles),
        "groups": list(new.groups),
        "timeout_at": now + new.timeout,
        "not_before": now + new.wait_timer,
        **(_change_data(new.change) if new.change is not None else {}),
    }


def _change_data(change: Change) -> dict[str, Any]:
    return {
        "change": {
            "since": change.since,
            "since_release": change.since_release,
            "commits": change.commits,
            "limited": change.limited,
        },
        "contributors": [
            {"identity": c.identity, "part": c.part.value, "sha": c.sha}
            for c in change.contributors
        ],
    }


def _request_from(event_id: int, row: Mapping[str, Any]) -> ApprovalRequest:
    data = row["data"]
    return ApprovalRequest(
        id=event_id,
        run_id=int(data["run_id"]),
        environment=str(data["environment"]),
        repository=str(data["repository"]),
        digest=str(data["digest"]),
        author=data.get("author"),
        actor=data.get("actor"),
        os_user=data.get("os_user"),
        required=int(data["required"]),
        roles=tuple(data.get("roles", ())),
        groups=tuple(data.get("groups", ())),
        requested_at=float(row["ts"]),
        timeout_at=float(data["timeout_at"]),
        not_before=float(data["not_before"]),
        contributors=tuple(
            Contributor(str(c["identity"]), Part(c["part"]), str(c["sha"]))
            for c in data.get("contributors", ())
        ),
    )


def _decision_from(row: Mapping[str, Any]) -> Decision:
    data = row["data"]
    granted = row["kind"] == EventKind.APPROVAL_GRANTED.value
    return Decision(
        event_id=int(row["id"]),
        request_id=int(data["request_id"]),
        verdict=Verdict.APPROVE if granted else Verdict.REJECT,
        identity=str(data["identity"]),
        email=str(data.get("email", "")),
        comment=str(data.get("comment") or ""),
        ts=float(row["ts"]),
        token_id=str(data.get("token_id") or ""),
    )
