"""The demo's people: Dana, who writes the changes, and Riley, who reviews them.

Both are in the demo repository's users file with tokens; Dana even holds the reviewer
role, so that the refusal of her own approval is separation of duties at work, not a
missing role. While the demo's pipeline waits at production's approval gate, `Reviewer`
plays the humans from another thread: Dana tries to approve her own change (refused and
recorded), then Riley approves it with a comment, through the same service as
`conveyor approve`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from conveyor.approvals.model import ApprovalState, Verdict
from conveyor.approvals.users import add_user, issue_token, users_path
from conveyor.service.approvals import ApprovalRefused, Credentials, all_statuses, decide
from conveyor.service.project import Project

AUTHOR = ("dana", "Dana Developer", "dana@example.com")
REVIEWER = ("riley", "Riley Reviewer", "riley@example.com")
TOKEN_LIFETIME = 24 * 3600.0
LOOK_EVERY = 0.3  # seconds between two looks for a pending request


@dataclass(frozen=True)
class People:
    author_token: str
    reviewer_token: str


def enrol(project: Project) -> People:
    """Write the users file (outside the repository: in the state folder) and issue tokens."""
    path = users_path(project.state_dir)
    now = datetime.now(UTC)
    tokens = []
    for name, _full_name, email in (AUTHOR, REVIEWER):
        roles = ["developer", "reviewer"] if name == AUTHOR[0] else ["reviewer"]
        add_user(path, name, email, roles, ["shop-team"])
        tokens.append(issue_token(path, name, TOKEN_LIFETIME, now).token)
    return People(author_token=tokens[0], reviewer_token=tokens[1])


@dataclass
class Reviewer:
    """Decides every pending request of the demo repository, author first, then reviewer."""

    project: Project
    people: People
    say: Callable[[str], None]
    on_approved: Callable[[], None] = lambda: None  # production's users come back
    seen: set[tuple[int, str]] = field(default_factory=set)
    refusals: list[str] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Reviewer:
        self._thread = threading.Thread(target=self._loop, name="demo-reviewer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(LOOK_EVERY):
            with self.project.open_store() as store:
                pending = all_statuses(store, pending_only=True)
            for status in pending:
                key = (status.request.run_id, status.request.environment)
                if key not in self.seen:
                    self.seen.add(key)
                    self._review(*key)

    def _review(self, run_id: int, environment: str) -> None:
        users_file = users_path(self.project.state_dir)
        with self.project.open_store() as store:
            try:
                decide(
                    store,
                    users_file,
                    run_id,
                    Verdict.APPROVE,
                    Credentials.fresh(self.people.author_token),
                    environment=environment,
                    comment="LGTM, ship it",
                )
            except ApprovalRefused as refused:
                line = f"dana approves her own change (run {run_id}): {refused.message}"
                self.refusals.append(line)
                self.say(line)
            status = decide(
                store,
                users_file,
                run_id,
                Verdict.APPROVE,
                Credentials.fresh(self.people.reviewer_token),
                environment=environment,
                comment="UAT on staging done: journeys, load and DAST reports read",
            )
        line = f"riley approves run {run_id} for {environment}: {status.state.value}"
        if status.state is ApprovalState.APPROVED:
            self.approvals.append(line)
            self.on_approved()
        self.say(line)
