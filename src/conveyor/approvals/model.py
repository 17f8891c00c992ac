"""Approval requests, decisions and refusals, and the fold that gives a request its state.

A request is the `approval.requested` event of one run and environment; decisions are the
`approval.granted` and `approval.rejected` events that name it. Its state is folded from
them (and from `approval.expired`, or the clock): nothing else is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from conveyor.spec.durations import format_duration


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # enough distinct approvers; the wait timer may still hold it
    REJECTED = "rejected"
    EXPIRED = "expired"  # the timeout passed first: a rejection

    @property
    def closed(self) -> bool:
        return self is not ApprovalState.PENDING


class Verdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Refusal(StrEnum):
    """Why a decision was not accepted; each one is recorded as `approval.refused`."""

    UNKNOWN_TOKEN = "unknown-token"  # noqa: S105 (a refusal's name)
    EXPIRED_TOKEN = "expired-token"  # noqa: S105 (a refusal's name)
    REVOKED_TOKEN = "revoked-token"  # noqa: S105 (a refusal's name)
    WRONG_SECRET = "wrong-secret"  # noqa: S105 (a refusal's name)
    REPLAY = "replay"  # a nonce seen before, or none
    STALE = "stale"  # a timestamp outside the accepted window
    AUTHOR = "author"  # separation of duties: an author of a commit of the change
    COMMITTER = "committer"  # separation of duties: a committer of a commit of the change
    TRIGGERER = "triggerer"  # separation of duties: whoever started the run
    NOT_ALLOWED = "not-allowed"  # in none of the allowed roles or groups
    ALREADY_DECIDED = "already-decided"  # this identity decided this request before
    CLOSED = "closed"  # already approved or rejected
    TIMED_OUT = "timed-out"
    RUN_FINISHED = "run-finished"  # the run stopped waiting: nobody would act on it
    NO_RUN = "no-run"
    NO_REQUEST = "no-request"
    AMBIGUOUS = "ambiguous"  # several environments wait: name one


@dataclass(frozen=True)
class Refused:
    code: Refusal
    reason: str
    hint: str | None = None


class Part(StrEnum):
    """What a person did to a commit of the change."""

    AUTHOR = "author"
    COMMITTER = "committer"


@dataclass(frozen=True)
class Contributor:
    """Someone who wrote or committed a commit of the change (one of their commits)."""

    identity: str  # git's "Name <email>"
    part: Part
    sha: str


@dataclass(frozen=True)
class Change:
    """The commits a request would deploy: since the environment's live release, or (with
    no live release to count from) the newest `limit` ancestors of the run's commit."""

    since: str | None  # the live release's commit
    since_release: str | None
    commits: int
    limited: bool  # the range was cut at the limit
    contributors: tuple[Contributor, ...]


@dataclass(frozen=True)
class ApprovalRequest:
    id: int  # the approval.requested event's id
    run_id: int
    environment: str
    repository: str
    digest: str
    author: str | None  # the commit's author, "Name <email>"
    actor: str | None  # who triggered the run (CONVEYOR_ACTOR or the OS user)
    os_user: str | None  # the account that ran the pipeline, whatever CONVEYOR_ACTOR said
    required: int
    roles: tuple[str, ...]
    groups: tuple[str, ...]
    requested_at: float
    timeout_at: float
    not_before: float  # the wait timer: no deploy before
    contributors: tuple[Contributor, ...] = ()  # of every commit of the change

    @property
    def image(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def timeout(self) -> float:
        return self.timeout_at - self.requested_at

    def approvers(self) -> str:
        """`role reviewer or group sre`: who may approve, in words."""
        parts = [f"role {role}" for role in self.roles] + [f"group {g}" for g in self.groups]
        return " or ".join(parts)


@dataclass(frozen=True)
class Decision:
    event_id: int
    request_id: int
    verdict: Verdict
    identity: str
    email: str
    comment: str
    ts: float
    token_id: str


@dataclass(frozen=True)
class ApprovalStatus:
    request: ApprovalRequest
    state: ApprovalState
    approvals: tuple[Decision, ...]  # counted ones: one per identity
    rejection: Decision | None
    closed_at: float | None

    @property
    def missing(self) -> int:
        return max(0, self.request.required - len(self.approvals))

    def ready(self, now: float) -> bool:
        """Approved, and the wait timer has passed: the deploy may go."""
        return self.state is ApprovalState.APPROVED and now >= self.request.not_before

    def decided_by(self, identity: str) -> Decision | None:
        decisions = [*self.approvals, *([self.rejection] if self.rejection else [])]
        return next((d for d in decisions if d.identity == identity), None)


def fold(
    request: ApprovalRequest, decisions: list[Decision], expired_at: float | None, now: float
) -> ApprovalStatus:
    """The request's state from its decisions (oldest first): the first that closes it wins;
    a pending request past its timeout is expired even before the expiry is recorded."""
    approvals: dict[str, Decision] = {}
    for decision in decisions:
        if expired_at is not None and decision.ts >= expired_at:
            break
        if decision.verdict is Verdict.REJECT:
            return ApprovalStatus(
                request, ApprovalState.REJECTED, tuple(approvals.values()), decision, decision.ts
            )
        approvals.setdefault(decision.identity, decision)
        if len(approvals) >= request.required:
            counted = tuple(approvals.values())
            return ApprovalStatus(request, ApprovalState.APPROVED, counted, None, decision.ts)
    counted = tuple(approvals.values())
    if expired_at is not None or now >= request.timeout_at:
        closed = expired_at if expired_at is not None else request.timeout_at
        return ApprovalStatus(request, ApprovalState.EXPIRED, counted, None, closed)
    return ApprovalStatus(request, ApprovalState.PENDING, counted, None, None)


def human_duration(seconds: float) -> str:
    """`24h`, `10m`, `1h30m`, `300ms`: a duration as conveyor.yml would write it."""
    return re.sub(r"(?<=[hm])00[ms]$", "", format_duration(seconds))
