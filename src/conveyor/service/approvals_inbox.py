"""An approver's inbox: the pending requests, those this person may decide first, each
with the change it would deploy (its commits and who wrote them). Deciding goes through
`approvals.decide`, so the inbox enforces exactly what the CLI does; the rules are read
here only to sort, never to allow."""

from __future__ import annotations

import time
from dataclasses import dataclass

from conveyor.approvals.model import ApprovalState, ApprovalStatus, Refusal, Refused, Verdict
from conveyor.approvals.rules import may_decide
from conveyor.approvals.users import User
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.service.approvals import _live_commit, all_statuses
from conveyor.service.project import Project
from conveyor.store.store import Store
from conveyor.vcs.commits import Commit, log_commits

SHOWN_COMMITS = 20  # of each change, newest first
RECENT_DECIDED = 20
SHOWN_PENDING = 50  # newest first; a request waits a day at most by default
_NO_USER = Refused(Refusal.NOT_ALLOWED, "you are not in the users file, so you cannot decide")


@dataclass(frozen=True)
class InboxItem:
    status: ApprovalStatus
    commits: list[Commit]  # the newest SHOWN_COMMITS of the change
    more_commits: bool
    # Why this person could not approve it now (the rule they would break); None: they may.
    obstacle: Refused | None


@dataclass(frozen=True)
class Inbox:
    waiting: list[InboxItem]  # pending, and this person may approve
    others: list[InboxItem]  # pending, but not for this person (shown with why)
    decided: list[ApprovalStatus]  # the latest closed requests


def inbox(project: Project, store: Store, user: User | None, now: float | None = None) -> Inbox:
    now = time.time() if now is None else now
    statuses = all_statuses(store, now=now)
    waiting: list[InboxItem] = []
    others: list[InboxItem] = []
    pending = [s for s in statuses if s.state is ApprovalState.PENDING]
    for status in pending[:SHOWN_PENDING]:  # one `git log` each
        obstacle = may_decide(user, Verdict.APPROVE, status, now) if user else _NO_USER
        commits, more = change_commits(project, store, status)
        item = InboxItem(status, commits, more, obstacle)
        (waiting if obstacle is None else others).append(item)
    decided = [s for s in statuses if s.state is not ApprovalState.PENDING][:RECENT_DECIDED]
    return Inbox(waiting, others, decided)


def change_commits(
    project: Project, store: Store, status: ApprovalStatus
) -> tuple[list[Commit], bool]:
    """The commits the request would deploy (since the live release's commit), newest
    first, at most SHOWN_COMMITS; and whether there are more. Empty when git cannot tell."""
    request = status.request
    try:
        head = store.get_run(request.run_id).commit_sha
    except NotFoundError:
        return [], False
    if head is None:
        return [], False
    _, since = _live_commit(store, request.environment)
    try:
        found = log_commits(project.directory, head, since, SHOWN_COMMITS + 1)
    except ConveyorError:
        return [], False
    return found[:SHOWN_COMMITS], len(found) > SHOWN_COMMITS
