"""Requests and decisions through the service, against a real store and users file."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from approvals.conftest import DIGEST, REPOSITORY, Gate, later
from conveyor.approvals.model import ApprovalState, Refusal, Verdict
from conveyor.approvals.users import issue_token, revoke_token
from conveyor.errors import ConveyorError
from conveyor.service import approvals as service
from conveyor.states import RunState
from conveyor.store.records import EventKind
from conveyor.store.schema import events


def test_two_required_stays_pending_after_one_and_is_approved_by_a_second_person(
    gate: Gate,
) -> None:
    run = gate.run()
    gate.request(run, required=2)

    first = gate.decide("bob", run, comment="looks right")
    second = gate.decide("carol", run)

    assert (first.state, first.missing) == (ApprovalState.PENDING, 1)
    assert second.state is ApprovalState.APPROVED
    assert [d.identity for d in second.approvals] == ["bob", "carol"]
    assert second.approvals[0].comment == "looks right"
    granted = gate.events(EventKind.APPROVAL_GRANTED)
    assert [(e.actor, e.run_id, e.data["environment"]) for e in granted] == [
        ("bob", run, "production"),
        ("carol", run, "production"),
    ]


def test_the_same_person_approving_twice_counts_once(gate: Gate) -> None:
    run = gate.run()
    gate.request(run, required=2)
    gate.decide("bob", run)

    again = gate.refused("bob", run)

    assert again.code is Refusal.ALREADY_DECIDED
    assert "each person counts once" in again.message
    status = service.run_statuses(gate.store, run)[0]
    assert (status.state, len(status.approvals)) == (ApprovalState.PENDING, 1)


def test_someone_in_no_allowed_role_or_group_is_refused_and_a_group_member_may_approve(
    gate: Gate,
) -> None:
    run = gate.run()
    gate.request(run, roles=["reviewer"], groups=["sre"])

    refused = gate.refused("dave", run)
    approved = gate.decide("erin", run)

    assert refused.code is Refusal.NOT_ALLOWED
    assert refused.message == (
        "refused: dave may not decide on production: it takes role reviewer or group sre"
    )
    assert approved.state is ApprovalState.APPROVED


def test_the_commits_author_cannot_approve_it(gate: Gate) -> None:
    run = gate.run(author="Ada L. <ADA@example.org>")  # another spelling, the same email
    gate.request(run)

    refused = gate.refused("ada", run)

    assert refused.code is Refusal.AUTHOR
    assert "ada wrote the change" in refused.message
    assert service.run_statuses(gate.store, run)[0].state is ApprovalState.PENDING


def test_whoever_triggered_the_run_cannot_approve_it(gate: Gate) -> None:
    run = gate.run(actor="tom@example.org")  # CONVEYOR_ACTOR set to an email
    gate.request(run)

    refused = gate.refused("tom", run)

    assert refused.code is Refusal.TRIGGERER
    assert f"tom started run {run}" in refused.message


def test_a_rejection_wins_and_later_decisions_are_refused(gate: Gate) -> None:
    run = gate.run()
    gate.request(run, required=2)
    gate.decide("bob", run)

    rejected = gate.decide("carol", run, Verdict.REJECT, comment="not during the sale")
    late = gate.refused("erin", run)

    assert rejected.state is ApprovalState.REJECTED
    assert rejected.rejection is not None
    assert (rejected.rejection.identity, rejected.rejection.comment) == (
        "carol",
        "not during the sale",
    )
    assert late.code is Refusal.CLOSED
    assert late.message == f"refused: the request for run {run} to production is already rejected"
    assert gate.refused("bob", run, Verdict.REJECT).code is Refusal.CLOSED
    with pytest.raises(ConveyorError, match="was rejected by carol: not during the sale"):
        service.require_approved(gate.store, "production", REPOSITORY, DIGEST)


def test_the_author_may_withdraw_their_own_change(gate: Gate) -> None:
    run = gate.run()
    gate.request(run)

    rejected = gate.decide("ada", run, Verdict.REJECT, comment="found a bug")

    assert rejected.state is ApprovalState.REJECTED


def test_a_request_not_approved_in_time_expires_and_a_later_approval_is_refused(
    gate: Gate,
) -> None:
    run = gate.run()
    request = gate.request(run, timeout="300ms")
    time.sleep(0.35)

    late = gate.refused("bob", run)

    assert late.code is Refusal.TIMED_OUT
    assert "no approval within 300ms" in late.message
    expired = gate.events(EventKind.APPROVAL_EXPIRED)
    assert [(e.run_id, e.data["request_id"]) for e in expired] == [(run, request.id)]
    assert service.run_statuses(gate.store, run)[0].state is ApprovalState.EXPIRED
    gate.refused("carol", run)  # the expiry is recorded once
    assert len(gate.events(EventKind.APPROVAL_EXPIRED)) == 1


def test_the_wait_timer_holds_an_approved_request_until_it_passes(gate: Gate) -> None:
    run = gate.run()
    now = time.time()
    request = gate.request(run, wait_timer="10m", timeout="1h", now=now)

    approved = gate.decide("bob", run)

    assert approved.state is ApprovalState.APPROVED
    assert not approved.ready(now + 599)
    assert approved.ready(now + 600)
    with pytest.raises(ConveyorError, match="wait timer holds it until"):
        service.require_approved(gate.store, "production", REPOSITORY, DIGEST, now=now + 599)
    found = service.require_approved(gate.store, "production", REPOSITORY, DIGEST, now=now + 600)
    assert found.request.id == request.id


@pytest.mark.parametrize(
    ("token", "code", "reason"),
    [
        ("cvy_000000000000_secret", Refusal.UNKNOWN_TOKEN, "token 000000000000 is unknown"),
        ("not-a-token", Refusal.UNKNOWN_TOKEN, "that is not a Conveyor token"),
        ("", Refusal.UNKNOWN_TOKEN, "no token"),
    ],
)
def test_an_unknown_token_is_refused_and_recorded(
    gate: Gate, token: str, code: Refusal, reason: str
) -> None:
    run = gate.run()
    gate.request(run)

    refused = gate.refused(token, run)

    assert refused.code is code
    assert reason in refused.message
    recorded = gate.events(EventKind.APPROVAL_REFUSED)
    assert [(e.data["code"], e.actor, e.run_id) for e in recorded] == [(code.value, None, run)]


def test_a_wrong_secret_is_refused_and_recorded_with_the_tokens_id(gate: Gate) -> None:
    run = gate.run()
    gate.request(run)
    real = gate.tokens["bob"]
    forged = real[: real.rindex("_") + 1] + "guessed"

    refused = gate.refused(forged, run)

    assert refused.code is Refusal.WRONG_SECRET
    token_id = real.split("_")[1]
    recorded = gate.events(EventKind.APPROVAL_REFUSED)[0]
    assert (recorded.data["token_id"], recorded.data["identity"]) == (token_id, "bob")
    assert "guessed" not in str(recorded.data)


def test_a_revoked_token_is_refused(gate: Gate) -> None:
    run = gate.run()
    gate.request(run)
    token_id = gate.tokens["bob"].split("_")[1]
    revoke_token(gate.users_file, "bob", token_id, datetime.now(UTC))

    refused = gate.refused("bob", run)

    assert refused.code is Refusal.REVOKED_TOKEN
    assert f"token {token_id} was revoked" in refused.message


def test_an_expired_token_is_refused(gate: Gate) -> None:
    run = gate.run()
    gate.request(run)
    issued = issue_token(gate.users_file, "carol", 60, datetime.now(UTC) - timedelta(hours=1))

    refused = gate.refused(issued.token, run)

    assert refused.code is Refusal.EXPIRED_TOKEN
    assert f"token {issued.entry.id} expired on" in refused.message


def test_a_reused_nonce_is_refused_as_a_replay(gate: Gate) -> None:
    run = gate.run()
    gate.request(run, required=2)
    sent = service.Credentials(gate.tokens["bob"], "nonce-0001", time.time(), "http")
    gate.decide("bob", run, credentials=sent)
    replayed = service.Credentials(gate.tokens["carol"], "nonce-0001", time.time(), "http")

    refused = gate.refused("carol", run, credentials=replayed)

    assert refused.code is Refusal.REPLAY
    assert service.run_statuses(gate.store, run)[0].missing == 1


def test_a_run_that_does_not_exist_is_refused_and_recorded(gate: Gate) -> None:
    refused = gate.refused("bob", 404)

    assert refused.code is Refusal.NO_RUN
    assert refused.message == "refused: run 404 does not exist"
    recorded = gate.events(EventKind.APPROVAL_REFUSED)[0]
    assert (recorded.run_id, recorded.data["run_id"], recorded.actor) == (None, 404, "bob")


def test_a_run_without_a_request_and_a_run_waiting_for_several_environments(gate: Gate) -> None:
    quiet, busy = gate.run(), gate.run()
    gate.request(busy, environment="production")
    gate.request(busy, environment="europe")

    assert gate.refused("bob", quiet).code is Refusal.NO_REQUEST
    ambiguous = gate.refused("bob", busy)
    assert ambiguous.code is Refusal.AMBIGUOUS
    assert "production, europe" in ambiguous.message
    assert ambiguous.hint == "name one with --environment"
    chosen = gate.decide("carol", busy, environment="europe")
    assert (chosen.request.environment, chosen.state) == ("europe", ApprovalState.APPROVED)
    assert gate.refused("bob", busy, environment="asia").code is Refusal.NO_REQUEST


def test_a_finished_run_takes_no_more_decisions(gate: Gate) -> None:
    run = gate.run()
    gate.request(run)
    gate.store.set_run_state(run, RunState.CANCELLED)

    assert gate.refused("bob", run).code is Refusal.RUN_FINISHED


def test_asking_twice_returns_the_first_request(gate: Gate) -> None:
    run = gate.run()

    first = gate.request(run)
    second = gate.request(run)

    assert first == second
    assert len(gate.events(EventKind.APPROVAL_REQUESTED)) == 1
    with pytest.raises(ConveyorError, match="one approval request per run and environment"):
        gate.request(run, digest="sha256:" + "cd" * 32)


def test_every_decision_and_refusal_is_chained_into_the_audit_log(gate: Gate) -> None:
    run = gate.run()
    gate.request(run, required=2)
    gate.decide("bob", run)
    gate.refused("ada", run)
    gate.refused("bob", 999)
    gate.decide("carol", run, Verdict.REJECT)

    entries = gate.store.audit_entries()

    assert [entry.kind for entry in entries] == [
        "approval.requested",
        "approval.granted",
        "approval.refused",
        "approval.refused",
        "approval.rejected",
    ]
    assert gate.store.audit_verify() == []
    with gate.store.engine.begin() as conn:  # quietly turning the rejection into a grant
        conn.execute(
            sa.update(events)
            .where(events.c.id == entries[-1].event_id)
            .values(kind="approval.granted")
        )
    problems = gate.store.audit_verify()
    assert [p.what for p in problems] == [f"event {entries[-1].event_id} was edited"]


def test_a_gated_digest_without_an_approved_request_cannot_be_deployed(gate: Gate) -> None:
    run = gate.run()
    gate.request(run)

    with pytest.raises(ConveyorError, match="it has no approved request") as raised:
        service.require_approved(gate.store, "production", REPOSITORY, DIGEST)

    assert "conveyor approve RUN" in str(raised.value.hint)
    gate.decide("bob", run)
    assert service.require_approved(gate.store, "production", REPOSITORY, DIGEST)
    with pytest.raises(ConveyorError, match="no approved request"):
        service.require_approved(gate.store, "staging", REPOSITORY, DIGEST)


def test_the_waiter_tells_what_is_missing_and_each_new_decision(gate: Gate) -> None:
    run = gate.run()
    request = gate.request(run, required=2)
    said: list[str] = []
    waiter = service.Waiter(gate.store, request, said.append)

    assert waiter.check() is None
    assert waiter.check() is None  # nothing new: nothing said
    gate.decide("bob", run, comment="lgtm")
    assert waiter.check() is None
    gate.decide("carol", run)
    outcome = waiter.check()

    assert outcome is not None
    assert (outcome.approved, outcome.message) == (True, "approved by bob, carol")
    assert said == [
        f"waiting for 2 more approvals by role reviewer: `conveyor approve {run}`",
        "approved by bob (1 of 2): lgtm",
        f"waiting for 1 more approval by role reviewer: `conveyor approve {run}`",
        "approved by carol (2 of 2)",
    ]


def test_the_waiter_records_the_expiry_and_fails(gate: Gate) -> None:
    run = gate.run()
    request = gate.request(run, timeout="24h")
    waiter = service.Waiter(gate.store, request, lambda _line: None)

    outcome = waiter.check(now=later(24 * 3600 + 1))

    assert outcome is not None
    assert (outcome.approved, outcome.message) == (False, "rejected: no approval within 24h")
    assert len(gate.events(EventKind.APPROVAL_EXPIRED)) == 1
