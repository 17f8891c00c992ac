"""A store with runs, a users file with tokens, and shortcuts to ask and decide.

The roster (users and their tokens) is made once per test session, since hashing a token
takes scrypt's deliberate time; each test gets its own copy of the file to change.

    ada    reviewer      the commit's author (by email)
    tom    reviewer      whoever triggers the runs (CONVEYOR_ACTOR)
    bob    reviewer
    carol  reviewer
    dave   group qa      in no allowed role
    erin   group sre
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conveyor.approvals.model import ApprovalRequest, ApprovalStatus, Verdict
from conveyor.approvals.users import add_user, issue_token
from conveyor.service import approvals as service
from conveyor.spec.environments import Approval
from conveyor.store.records import EventKind, EventRecord, NewRun
from conveyor.store.store import Store

AUTHOR = "Ada Lovelace <ada@example.org>"
TRIGGERER = "tom"
DIGEST = "sha256:" + "ab" * 32
REPOSITORY = "app"
PEOPLE = {
    "ada": ("ada@example.org", ["reviewer"], []),
    "tom": ("tom@example.org", ["reviewer"], []),
    "bob": ("bob@example.org", ["reviewer"], []),
    "carol": ("carol@example.org", ["reviewer"], []),
    "dave": ("dave@example.org", [], ["qa"]),
    "erin": ("erin@example.org", [], ["sre"]),
}


@dataclass(frozen=True)
class Roster:
    users_file: Path
    tokens: dict[str, str]  # name -> token


@pytest.fixture(scope="session")
def roster(tmp_path_factory: pytest.TempPathFactory) -> Roster:
    path = tmp_path_factory.mktemp("roster") / "users.yml"
    tokens = {}
    for name, (email, roles, groups) in PEOPLE.items():
        add_user(path, name, email, roles, groups)
        tokens[name] = issue_token(path, name, None, datetime.now(UTC)).token
    return Roster(path, tokens)


@dataclass(frozen=True)
class Gate:
    store: Store
    users_file: Path
    tokens: dict[str, str]

    def run(self, author: str | None = AUTHOR, actor: str | None = TRIGGERER) -> int:
        return self.store.create_run(NewRun(pipeline="shop", author=author, actor=actor), [])

    def request(
        self,
        run_id: int,
        environment: str = "production",
        digest: str = DIGEST,
        now: float | None = None,
        **approval: object,
    ) -> ApprovalRequest:
        settings = Approval.model_validate({"roles": ["reviewer"], **approval})
        return service.request_approval(
            self.store,
            run_id=run_id,
            environment=environment,
            repository=REPOSITORY,
            digest=digest,
            approval=settings,
            now=now,
        )

    def decide(
        self,
        who: str,
        run_id: int,
        verdict: Verdict = Verdict.APPROVE,
        *,
        environment: str | None = None,
        comment: str = "",
        now: float | None = None,
        credentials: service.Credentials | None = None,
    ) -> ApprovalStatus:
        """Decide as `who` (a roster name, or a raw token)."""
        token = self.tokens.get(who, who)
        return service.decide(
            self.store,
            self.users_file,
            run_id,
            verdict,
            credentials or service.Credentials.fresh(token),
            environment=environment,
            comment=comment,
            now=now,
        )

    def refused(
        self,
        who: str,
        run_id: int,
        verdict: Verdict = Verdict.APPROVE,
        *,
        environment: str | None = None,
        now: float | None = None,
        credentials: service.Credentials | None = None,
    ) -> service.ApprovalRefused:
        """The refusal of `who`'s decision (the test fails if it is accepted)."""
        with pytest.raises(service.ApprovalRefused) as raised:
            self.decide(
                who, run_id, verdict, environment=environment, now=now, credentials=credentials
            )
        return raised.value

    def events(self, kind: EventKind) -> list[EventRecord]:
        return [event for event in self.store.events() if event.kind == kind.value]


@pytest.fixture
def gate(tmp_path: Path, roster: Roster) -> Iterator[Gate]:
    users_file = tmp_path / "users.yml"
    shutil.copy(roster.users_file, users_file)
    with Store(tmp_path / "state") as store:
        yield Gate(store, users_file, dict(roster.tokens))


def later(seconds: float) -> float:
    """A moment `seconds` from now, for decisions judged at a given time."""
    return time.time() + seconds
