"""The pure rules: who may decide which request, and when."""

from __future__ import annotations

from dataclasses import replace

import pytest

from conveyor.approvals import rules
from conveyor.approvals.model import (
    ApprovalRequest,
    ApprovalState,
    ApprovalStatus,
    Decision,
    Refusal,
    Refused,
    Verdict,
    fold,
)
from conveyor.approvals.users import User

NOW = 1_000_000.0
REQUEST = ApprovalRequest(
    id=7,
    run_id=12,
    environment="production",
    repository="app",
    digest="sha256:" + "ab" * 32,
    author="Ada Lovelace <ada@example.org>",
    actor="tom",
    os_user="ci-runner",
    required=2,
    roles=("reviewer",),
    groups=("sre",),
    requested_at=NOW - 60,
    timeout_at=NOW + 3600,
    not_before=NOW - 60,
)


def user(name: str, email: str = "") -> User:
    return User(name=name, email=email or f"{name}@example.org", roles=["reviewer"])


def decision(identity: str, verdict: Verdict = Verdict.APPROVE, ts: float = NOW) -> Decision:
    return Decision(
        event_id=int(ts) + len(identity),
        request_id=REQUEST.id,
        verdict=verdict,
        identity=identity,
        email=f"{identity}@example.org",
        comment="",
        ts=ts,
        token_id="0" * 12,
    )


def pending(*decisions: Decision) -> ApprovalStatus:
    return fold(REQUEST, list(decisions), None, NOW)


def code(found: object) -> Refusal | None:
    """The refusal's code; None when `found` is not a refusal."""
    return found.code if isinstance(found, Refused) else None


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (user("ada"), Refusal.AUTHOR),  # by email
        (user("ADA", "Ada@Example.org"), Refusal.AUTHOR),  # case does not matter
        (user("tom", "t@example.org"), Refusal.TRIGGERER),  # the run's actor by name
        (user("ci-runner"), Refusal.TRIGGERER),  # the OS account, whatever the actor said
        (user("bob"), None),
    ],
)
def test_separation_of_duties(who: User, expected: Refusal | None) -> None:
    assert code(rules.may_decide(who, Verdict.APPROVE, pending(), NOW)) is expected


def test_an_author_matching_by_name_is_refused() -> None:
    request = replace(REQUEST, author="bob <bob@home.example>")
    status = fold(request, [], None, NOW)

    assert code(rules.may_decide(user("bob"), Verdict.APPROVE, status, NOW)) is Refusal.AUTHOR


def test_a_triggerer_named_by_email_is_refused() -> None:
    request = replace(REQUEST, actor="bob@example.org")
    status = fold(request, [], None, NOW)

    assert code(rules.may_decide(user("bob"), Verdict.APPROVE, status, NOW)) is Refusal.TRIGGERER


def test_roles_or_groups_decide_who_may() -> None:
    in_group = User(name="erin", email="erin@example.org", groups=["sre"])
    neither = User(name="dave", email="dave@example.org", roles=["dev"], groups=["qa"])

    assert rules.may_decide(in_group, Verdict.APPROVE, pending(), NOW) is None
    assert code(rules.may_decide(neither, Verdict.REJECT, pending(), NOW)) is Refusal.NOT_ALLOWED


def test_the_author_may_reject_but_not_approve() -> None:
    ada = user("ada")

    assert rules.may_decide(ada, Verdict.REJECT, pending(), NOW) is None
    assert code(rules.may_decide(ada, Verdict.APPROVE, pending(), NOW)) is Refusal.AUTHOR


def test_a_person_decides_once() -> None:
    status = pending(decision("bob"))

    assert code(rules.may_decide(user("bob"), Verdict.APPROVE, status, NOW)) is (
        Refusal.ALREADY_DECIDED
    )
    assert rules.may_decide(user("carol"), Verdict.APPROVE, status, NOW) is None


def test_closed_and_timed_out_requests_take_no_decision() -> None:
    approved = pending(decision("bob"), decision("carol", ts=NOW + 1))
    rejected = pending(decision("bob", Verdict.REJECT))
    carol = user("carol")

    assert approved.state is ApprovalState.APPROVED
    assert code(rules.may_decide(user("erin"), Verdict.REJECT, approved, NOW)) is Refusal.CLOSED
    assert code(rules.may_decide(carol, Verdict.APPROVE, rejected, NOW)) is Refusal.CLOSED
    late = REQUEST.timeout_at
    assert code(rules.may_decide(carol, Verdict.APPROVE, pending(), late)) is Refusal.TIMED_OUT


def test_the_fold_counts_distinct_people_and_stops_at_the_first_closing_decision() -> None:
    twice = pending(decision("bob"), decision("bob", ts=NOW + 1))
    closed = pending(
        decision("bob"),
        decision("carol", Verdict.REJECT, ts=NOW + 1),
        decision("erin", ts=NOW + 2),
    )
    expired = fold(REQUEST, [], None, REQUEST.timeout_at)

    assert (twice.state, len(twice.approvals)) == (ApprovalState.PENDING, 1)
    assert (closed.state, [d.identity for d in closed.approvals]) == (
        ApprovalState.REJECTED,
        ["bob"],
    )
    assert (expired.state, expired.closed_at) == (ApprovalState.EXPIRED, REQUEST.timeout_at)


@pytest.mark.parametrize(
    ("nonce", "timestamp", "expected"),
    [
        ("a1b2c3d4e5", NOW, None),
        ("a1b2c3d4e5", NOW - 299, None),
        ("a1b2c3d4e5", NOW - 301, Refusal.STALE),
        ("a1b2c3d4e5", NOW + 301, Refusal.STALE),
        ("a1b2c3d4e5", float("nan"), Refusal.STALE),
        ("a1b2c3d4e5", None, Refusal.STALE),
        ("short", NOW, Refusal.REPLAY),
        (None, NOW, Refusal.REPLAY),
    ],
)
def test_freshness(nonce: str | None, timestamp: float | None, expected: Refusal | None) -> None:
    assert code(rules.check_fresh(nonce, timestamp, NOW)) is expected


def test_choosing_the_request_a_decision_is_about() -> None:
    production = pending()
    europe = fold(replace(REQUEST, id=8, environment="europe"), [], None, NOW)

    assert rules.choose([production], 12, None) is production
    assert rules.choose([production, europe], 12, "europe") is europe
    assert code(rules.choose([production, europe], 12, None)) is Refusal.AMBIGUOUS
    assert code(rules.choose([], 12, None)) is Refusal.NO_REQUEST
