"""Separation of duties over the whole change: every author and committer of the commits
since the environment's live release is refused, not only the newest commit's author.

A real git repository: the attack is an empty commit by someone else on top of the real
author's change, which used to make the real author look like a reviewer.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from approvals.conftest import DIGEST, REPOSITORY, TRIGGERER, Gate
from conftest import GIT_ENV
from conveyor.approvals.model import ApprovalState, Refusal
from conveyor.errors import ConveyorError
from conveyor.service import approvals as service
from conveyor.spec.environments import Approval
from conveyor.states import DeployState
from conveyor.store.records import EventKind, NewRun

ADA = ("Ada Lovelace", "ada@example.org")
BOB = ("Bob", "bob@example.org")
CAROL = ("Carol", "carol@example.org")


class Repo:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.git(ADA, ADA, "init", "-q", "-b", "main")

    def git(self, author: tuple[str, str], committer: tuple[str, str], *args: str) -> str:
        env = {
            **os.environ,
            **GIT_ENV,
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_COMMITTER_NAME": committer[0],
            "GIT_COMMITTER_EMAIL": committer[1],
        }
        done = subprocess.run(
            ["git", "-C", str(self.root), *args],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        return done.stdout.strip()

    def commit(
        self, author: tuple[str, str], committer: tuple[str, str], name: str | None = None
    ) -> str:
        """A commit changing `name` (an empty commit without one); returns its sha."""
        if name is not None:
            (self.root / name).write_text(f"{name} by {author[0]}\n")
            self.git(author, committer, "add", name)
        self.git(author, committer, "commit", "-q", "--allow-empty", "-m", f"{name or 'empty'}")
        return self.git(author, committer, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


def run_at(gate: Gate, sha: str, author: tuple[str, str]) -> int:
    meta = NewRun(
        pipeline="shop", commit_sha=sha, author=f"{author[0]} <{author[1]}>", actor=TRIGGERER
    )
    return gate.store.create_run(meta, [])


def ask(gate: Gate, run_id: int, repo: Repo) -> None:
    """The request the deploy job records, reviewers or the sre group allowed."""
    service.request_approval(
        gate.store,
        run_id=run_id,
        environment="production",
        repository=REPOSITORY,
        digest=DIGEST,
        approval=Approval(roles=["reviewer"], groups=["sre"]),
        repo=repo.root,
    )


def make_live(gate: Gate, run_id: int) -> None:
    """A successful deploy of `run_id` to production, now its live release."""
    ledger = gate.store.ledger
    ledger.environments.ensure("production", 18080, 18081)
    deploy = ledger.deploys.begin(
        "production",
        release_id="r1",
        repository=REPOSITORY,
        digest="sha256:" + "cd" * 32,
        ports=[18090],
        previous=None,
        actor="tom",
        run_id=run_id,
    )
    ledger.deploys.finish(deploy.id, DeployState.SUCCEEDED, None)
    ledger.environments.set_intent(
        "production",
        routes={},
        live="r1",
        warm=None,
        event=EventKind.TRAFFIC_SHIFTED,
        actor="tom",
        data={},
    )


def test_an_empty_commit_on_top_does_not_let_the_real_author_or_committer_approve(
    gate: Gate, repo: Repo
) -> None:
    written = repo.commit(ADA, CAROL, "feature.py")  # ada wrote it, carol applied it
    head = repo.commit(BOB, BOB)  # bob's empty commit on top: the newest author is bob
    run = run_at(gate, head, BOB)
    ask(gate, run, repo)

    ada = gate.refused("ada", run)
    carol = gate.refused("carol", run)
    bob = gate.refused("bob", run)
    approved = gate.decide("erin", run)

    assert ada.code is Refusal.AUTHOR
    assert ada.refused.reason == (
        f"ada wrote commit {written[:12]} (Ada Lovelace <ada@example.org>) of this change "
        "and cannot approve it"
    )
    assert carol.code is Refusal.COMMITTER
    assert f"carol committed commit {written[:12]} (Carol <carol@example.org>)" in str(carol)
    assert bob.code is Refusal.AUTHOR
    assert approved.state is ApprovalState.APPROVED
    refused = gate.events(EventKind.APPROVAL_REFUSED)
    assert [(e.actor, e.data["code"]) for e in refused] == [
        ("ada", "author"),
        ("carol", "committer"),
        ("bob", "author"),
    ]
    audited = {entry.event_id for entry in gate.store.audit_entries()}
    assert {e.id for e in refused} <= audited
    assert gate.store.audit_verify() == []


def test_the_change_counts_from_the_live_release(gate: Gate, repo: Repo) -> None:
    live = repo.commit(CAROL, CAROL, "base.py")  # already in production
    make_live(gate, run_at(gate, live, CAROL))
    repo.commit(ADA, ADA, "feature.py")
    head = repo.commit(BOB, BOB)
    run = run_at(gate, head, BOB)
    ask(gate, run, repo)

    ada = gate.refused("ada", run)
    approved = gate.decide("carol", run)  # carol's commit is live already: not this change

    assert ada.code is Refusal.AUTHOR
    assert approved.state is ApprovalState.APPROVED
    [requested] = gate.events(EventKind.APPROVAL_REQUESTED)[-1:]
    assert requested.data["change"] == {
        "since": live,
        "since_release": "r1",
        "commits": 2,
        "limited": False,
    }
    assert {(c["identity"], c["part"]) for c in requested.data["contributors"]} == {
        ("Ada Lovelace <ada@example.org>", "author"),
        ("Ada Lovelace <ada@example.org>", "committer"),
        ("Bob <bob@example.org>", "author"),
        ("Bob <bob@example.org>", "committer"),
    }


def test_without_a_live_release_the_ancestors_up_to_the_limit_count(
    gate: Gate, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(CAROL, CAROL, "old.py")  # beyond the limit
    repo.commit(ADA, ADA, "feature.py")
    head = repo.commit(BOB, BOB)
    monkeypatch.setattr(service, "CHANGE_LIMIT", 2)
    run = run_at(gate, head, BOB)
    ask(gate, run, repo)

    ada = gate.refused("ada", run)
    approved = gate.decide("carol", run)

    assert ada.code is Refusal.AUTHOR
    assert approved.state is ApprovalState.APPROVED
    [requested] = gate.events(EventKind.APPROVAL_REQUESTED)
    assert requested.data["change"]["limited"] is True


def test_a_commit_the_repository_does_not_have_fails_the_request(gate: Gate, repo: Repo) -> None:
    repo.commit(ADA, ADA, "feature.py")
    run = run_at(gate, "f" * 40, ADA)

    with pytest.raises(ConveyorError, match="cannot tell who wrote run"):
        ask(gate, run, repo)

    assert gate.events(EventKind.APPROVAL_REQUESTED) == []
