"""Approvals under the CLI, the HTTP API and the deploy step (docs/approvals.md).

`gate` is what a pipeline's deploy job does before deploying to an environment with
`approval:`: record the request, then wait for it to be approved, rejected or to expire.
`decide` is the one way to approve or reject, from the CLI and the API alike.
`require_approved` is the check `environments.deploy` makes, so nothing deploys to a gated
environment without an approval, whichever way the deploy is started.
"""

from __future__ import annotations

import getpass
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor.approvals.ledger import ApprovalLedger, Attempt, NewRequest
from conveyor.approvals.model import (
    ApprovalRequest,
    ApprovalState,
    ApprovalStatus,
    Change,
    Contributor,
    Part,
    Refusal,
    Refused,
    Verdict,
    human_duration,
)
from conveyor.approvals.users import (
    Authenticated,
    NotAuthenticated,
    authenticate,
    load_users,
)
from conveyor.errors import ConveyorError, ExitCode, NotFoundError
from conveyor.service.project import Project
from conveyor.spec.environments import Approval
from conveyor.store.store import Store
from conveyor.vcs.commits import Commit, log_commits

POLL_INTERVAL = 0.5  # seconds between two looks at the store while a deploy waits
# Commits counted when no live release bounds the change (or when the range is longer):
# their authors and committers may not approve. Bounds the `git log` of a first deploy.
CHANGE_LIMIT = 1000
Say = Callable[[str], None]


# A refusal is the human gate saying no (exit 1, as a gate that blocks), unless nothing
# was there to decide on (4) or the command must name an environment (2): docs/cli.md.
_EXIT_OF_REFUSAL = {
    Refusal.NO_RUN: ExitCode.NOT_FOUND,
    Refusal.NO_REQUEST: ExitCode.NOT_FOUND,
    Refusal.AMBIGUOUS: ExitCode.USAGE,
}


class ApprovalRefused(ConveyorError):
    """A decision that was not accepted; it is recorded as `approval.refused`."""

    def __init__(self, refused: Refused) -> None:
        super().__init__(f"refused: {refused.reason}", refused.hint)
        self.refused = refused
        self.exit_code = _EXIT_OF_REFUSAL.get(refused.code, ExitCode.PIPELINE_FAILED)

    @property
    def code(self) -> Refusal:
        return self.refused.code


@dataclass(frozen=True)
class Credentials:
    """What proves who decides: the token, and a nonce and timestamp against replays."""

    token: str | None
    nonce: str | None
    timestamp: float | None
    via: str  # "cli" or "http"

    @classmethod
    def fresh(cls, token: str | None, via: str = "cli") -> Credentials:
        """For a call made here and now (the CLI): a new nonce, the current time."""
        return cls(token, secrets.token_hex(16), time.time(), via)


@dataclass(frozen=True)
class WaitOutcome:
    status: ApprovalStatus
    approved: bool
    message: str  # who approved, or why the deploy may not go


def ledger_of(store: Store) -> ApprovalLedger:
    return ApprovalLedger(store.engine)


# --- requests and decisions --------------------------------------------------------------


def request_approval(
    store: Store,
    *,
    run_id: int,
    environment: str,
    repository: str,
    digest: str,
    approval: Approval,
    now: float | None = None,
    repo: Path | None = None,
) -> ApprovalRequest:
    """The run's request to deploy `repository@digest` to `environment` (one per run and
    environment: asking again returns the first). With `repo` (the project's git
    repository), it records every author and committer of the change, who may not approve."""
    new = NewRequest(
        run_id=run_id,
        environment=environment,
        repository=repository,
        digest=digest,
        required=approval.required,
        roles=tuple(approval.roles),
        groups=tuple(approval.groups),
        timeout=approval.timeout,
        wait_timer=approval.wait_timer,
        os_user=_os_user(),
        change=change_of(repo, store, run_id, environment) if repo is not None else None,
    )
    return ledger_of(store).request(new, now)


def change_of(repo: Path, store: Store, run_id: int, environment: str) -> Change | None:
    """Who wrote and committed the change the run would deploy: the commits since the
    environment's live release (`git log live..run`); with no live release to count from (a
    first deploy, a live release deployed by hand or whose commit is gone), the newest
    CHANGE_LIMIT ancestors of the run's commit. None when the run has no commit."""
    head = store.get_run(run_id).commit_sha
    if head is None:
        return None
    since_release, since = _live_commit(store, environment)
    if since is not None:
        try:
            return _change(log_commits(repo, head, since, CHANGE_LIMIT + 1), since, since_release)
        except ConveyorError:
            pass  # history was rewritten under the live release: count back from the run
    try:
        return _change(log_commits(repo, head, None, CHANGE_LIMIT + 1), None, None)
    except ConveyorError as error:
        raise ConveyorError(
            f"cannot tell who wrote run {run_id}'s change ({head[:12]}), so nobody could "
            f"approve it safely: {error}",
            hint="run the pipeline again from the repository that holds the commit",
        ) from None


def _live_commit(store: Store, environment: str) -> tuple[str | None, str | None]:
    """The environment's live release and the commit of the run that deployed it."""
    record = store.ledger.environments.get(environment)
    live = record.live_release if record is not None else None
    if live is None:
        return None, None
    deploys = [d for d in store.ledger.deploys.of_environment(environment) if d.release_id == live]
    from_runs = [d.run_id for d in deploys if d.run_id is not None]
    if not from_runs:
        return None, None
    try:
        return live, store.get_run(from_runs[-1]).commit_sha
    except NotFoundError:
        return None, None


def _change(commits: list[Commit], since: str | None, since_release: str | None) -> Change:
    """Each person once per part (author, committer), with their newest commit."""
    found: dict[tuple[str, Part], Contributor] = {}
    for commit in commits[:CHANGE_LIMIT]:
        for part, identity in ((Part.AUTHOR, commit.author), (Part.COMMITTER, commit.committer)):
            key = (identity.casefold(), part)
            found.setdefault(key, Contributor(identity, part, commit.sha))
    return Change(
        since=since,
        since_release=since_release,
        commits=min(len(commits), CHANGE_LIMIT),
        limited=len(commits) > CHANGE_LIMIT,
        contributors=tuple(found.values()),
    )


def decide(
    store: Store,
    users_file: Path,
    run_id: int,
    verdict: Verdict,
    credentials: Credentials,
    *,
    environment: str | None = None,
    comment: str = "",
    now: float | None = None,
    identity: Authenticated | NotAuthenticated | None = None,
) -> ApprovalStatus:
    """Approve or reject the run's request as the token's owner; raises ApprovalRefused
    (recorded, with the reason) when the decision is not accepted. `identity`: the
    token's owner when the caller (the HTTP guard) has already authenticated it."""
    now = time.time() if now is None else now
    if identity is None:
        identity = _identity(users_file, credentials.token, now)
    attempt = Attempt(
        run_id=run_id,
        environment=environment,
        verdict=verdict,
        comment=comment.strip(),
        nonce=credentials.nonce,
        timestamp=credentials.timestamp,
        via=credentials.via,
        user=identity.user if isinstance(identity, Authenticated) else None,
        token_id=identity.token_id,
        auth_refusal=None if isinstance(identity, Authenticated) else identity.refused,
        identity_hint=None if isinstance(identity, Authenticated) else identity.identity,
    )
    result = ledger_of(store).decide(attempt, now)
    if isinstance(result, Refused):
        raise ApprovalRefused(result)
    return result


def _identity(users_file: Path, token: str | None, now: float) -> Authenticated | NotAuthenticated:
    if not token:
        return _NO_TOKEN
    return authenticate(load_users(users_file), token, datetime.fromtimestamp(now, UTC))


_NO_TOKEN = NotAuthenticated(
    Refused(
        Refusal.UNKNOWN_TOKEN,
        "no token: a decision is made with your own token",
        "set CONVEYOR_TOKEN or pass --token-file (`conveyor users token NAME` issues one)",
    ),
    token_id=None,
    identity=None,
)


# --- reading ------------------------------------------------------------------------------


def run_statuses(store: Store, run_id: int, now: float | None = None) -> list[ApprovalStatus]:
    """The run's requests (raises NotFoundError for a run that does not exist)."""
    store.get_run(run_id)
    return ledger_of(store).statuses(time.time() if now is None else now, run_id=run_id)


def all_statuses(
    store: Store, *, pending_only: bool = False, now: float | None = None
) -> list[ApprovalStatus]:
    """Every request, newest first."""
    found = ledger_of(store).statuses(time.time() if now is None else now)
    if pending_only:
        found = [s for s in found if s.state is ApprovalState.PENDING]
    return list(reversed(found))


def require_approved(
    store: Store, environment: str, repository: str, digest: str, now: float | None = None
) -> ApprovalStatus:
    """The approved request that lets `digest` be deployed to `environment` now; else a
    ConveyorError saying why not and how to get one. A newer rejection wins."""
    now = time.time() if now is None else now
    image = f"{repository}@{digest[:19]}"
    statuses = ledger_of(store).statuses(now, environment=environment, digest=digest)
    decided = [s for s in statuses if s.state in (ApprovalState.APPROVED, ApprovalState.REJECTED)]
    if not decided or decided[-1].state is ApprovalState.REJECTED:
        rejected = decided[-1] if decided else None
        why = (
            f"its request in run {rejected.request.run_id} was {_rejection_words(rejected)}"
            if rejected
            else "it has no approved request"
        )
        raise ConveyorError(
            f"{environment} needs an approval before a deploy: {image} cannot go there, {why}",
            hint=f"deploy it from a pipeline run (a `deploy` job to {environment}), then have "
            "an allowed person `conveyor approve RUN`; `conveyor approvals ls` lists requests",
        )
    approved = decided[-1]
    if not approved.ready(now):
        until = datetime.fromtimestamp(approved.request.not_before).strftime("%H:%M:%S")
        raise ConveyorError(
            f"{image} is approved for {environment}, but its wait timer holds it until {until}"
        )
    return approved


def approval_used(status: ApprovalStatus) -> dict[str, Any]:
    """What a deploy records of the approval it is made under (the release record reads it):
    the request, the run that asked, who approved and when."""
    request = status.request
    return {
        "request_id": request.id,
        "run_id": request.run_id,
        "digest": request.digest,
        "approved_by": [decision.identity for decision in status.approvals],
        "approved_at": status.closed_at,
    }


# --- waiting ------------------------------------------------------------------------------


def gate(
    project: Project,
    store: Store,
    *,
    approval: Approval | None,
    run_id: int | None,
    environment: str,
    repository: str,
    digest: str,
    say: Say,
    stop: threading.Event | None = None,
) -> WaitOutcome | None:
    """For a deploy job: None when `environment` has no `approval:` (its setting in
    conveyor.yml); else record the request and wait until it is approved (and its wait
    timer passed), rejected or expired."""
    if approval is None:
        return None
    if run_id is None:
        raise ConveyorError(
            f"{environment} needs an approval, which only a pipeline run can ask for",
            hint="CONVEYOR_RUN_ID is not set: run the deploy job with `conveyor run`",
        )
    request = request_approval(
        store,
        run_id=run_id,
        environment=environment,
        repository=repository,
        digest=digest,
        approval=approval,
        repo=project.directory,
    )
    say(
        f"{environment} needs {request.required} approval(s) by {request.approvers()} "
        f"within {human_duration(request.timeout)}"
    )
    return wait(store, request, say, stop=stop)


def wait(
    store: Store,
    request: ApprovalRequest,
    say: Say,
    *,
    poll: float = POLL_INTERVAL,
    stop: threading.Event | None = None,
) -> WaitOutcome:
    """Poll until the request is decided; says each new decision and what it still needs.
    Setting `stop` (the job was cancelled) ends the wait with a ConveyorError."""
    waiter = Waiter(store, request, say)
    stop = stop or threading.Event()
    while (outcome := waiter.check()) is None:
        if stop.wait(poll):
            raise ConveyorError(f"stopped waiting for approval of run {request.run_id}")
    return outcome


class Waiter:
    """One look at a request per `check`, telling only what changed since the last."""

    def __init__(self, store: Store, request: ApprovalRequest, say: Say) -> None:
        self.ledger = ledger_of(store)
        self.request = request
        self.say = say
        self._told: set[int] = set()
        self._last_note = ""

    def check(self, now: float | None = None) -> WaitOutcome | None:
        now = time.time() if now is None else now
        status = self.ledger.status(self.request, now)
        if status.state is ApprovalState.EXPIRED:
            status = self.ledger.expire(self.request, now)
        self._tell_decisions(status)
        if status.state is ApprovalState.REJECTED:
            assert status.rejection is not None
            return WaitOutcome(status, False, _rejection_words(status))
        if status.state is ApprovalState.EXPIRED:
            return WaitOutcome(status, False, f"rejected: {_expiry_words(self.request)}")
        if status.ready(now):
            names = ", ".join(d.identity for d in status.approvals)
            return WaitOutcome(status, True, f"approved by {names}")
        self._note(self._waiting_note(status))
        return None

    def _tell_decisions(self, status: ApprovalStatus) -> None:
        required = self.request.required
        for count, decision in enumerate(status.approvals, start=1):
            if decision.event_id not in self._told:
                said = f": {decision.comment}" if decision.comment else ""
                self.say(f"approved by {decision.identity} ({count} of {required}){said}")
                self._told.add(decision.event_id)

    def _waiting_note(self, status: ApprovalStatus) -> str:
        request = self.request
        if status.state is ApprovalState.APPROVED:
            until = datetime.fromtimestamp(request.not_before).strftime("%H:%M:%S")
            return f"approved; the wait timer holds the deploy until {until}"
        more = status.missing
        return (
            f"waiting for {more} more approval{'s' if more > 1 else ''} by "
            f"{request.approvers()}: `conveyor approve {request.run_id}`"
        )

    def _note(self, note: str) -> None:
        if note != self._last_note:
            self.say(note)
            self._last_note = note


def _rejection_words(status: ApprovalStatus) -> str:
    if status.rejection is None:
        return _expiry_words(status.request)
    said = f": {status.rejection.comment}" if status.rejection.comment else ""
    return f"rejected by {status.rejection.identity}{said}"


def _expiry_words(request: ApprovalRequest) -> str:
    return f"no approval within {human_duration(request.timeout)}"


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None
