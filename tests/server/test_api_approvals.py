"""Approvals through the API: the inbox, a run's requests, and decisions with separation
of duties enforced by the server as by the CLI (the author is refused, a reviewer is not)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from conveyor.approvals.model import Refusal, Verdict
from conveyor.approvals.users import add_user, issue_token
from conveyor.service import approvals as service
from conveyor.spec.environments import Approval
from conveyor.store.records import EventKind, NewRun
from server.conftest import ServerUnderTest

AUTHOR = "Ada Lovelace <ada@example.org>"


@pytest.fixture
def waiting(served: ServerUnderTest) -> int:
    """A run by ada (a reviewer too) waiting for one reviewer's approval to production."""
    add_user(served.context.users_file, "ada", "ada@example.org", ["reviewer"], [])
    served.tokens["ada"] = issue_token(
        served.context.users_file, "ada", None, datetime.now(UTC)
    ).token
    store = served.context.store
    run_id = store.create_run(NewRun(pipeline="demo", author=AUTHOR, actor="ci"), [])
    service.request_approval(
        store,
        run_id=run_id,
        environment="production",
        repository="app",
        digest="sha256:" + "ab" * 32,
        approval=Approval.model_validate({"roles": ["reviewer"]}),
    )
    return run_id


def test_the_inbox_lists_what_waits(served: ServerUnderTest, waiting: int) -> None:
    answer = served.client.get(
        "/api/v1/approvals", params={"pending": "true"}, headers=served.as_user("viewer")
    )
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [(i["request"]["run_id"], i["state"]) for i in items] == [(waiting, "pending")]
    assert answer.json()["next_cursor"] is None
    of_run = served.client.get(
        f"/api/v1/runs/{waiting}/approvals", headers=served.as_user("viewer")
    ).json()["items"]
    assert of_run[0]["request"]["environment"] == "production"
    missing = served.client.get("/api/v1/runs/404/approvals", headers=served.as_user("viewer"))
    assert missing.status_code == 404


def test_the_author_is_refused_and_a_reviewer_approves(
    served: ServerUnderTest, waiting: int
) -> None:
    url = f"/api/v1/runs/{waiting}/approve"
    by_author = served.client.post(url, json={"comment": "lgtm"}, headers=served.as_user("ada"))
    assert by_author.status_code == 403
    assert by_author.json()["error"] == "author" and by_author.json()["reason"]
    by_reviewer = served.client.post(
        url, json={"comment": "checked on staging"}, headers=served.as_user("reviewer")
    )
    assert by_reviewer.status_code == 200, by_reviewer.text
    body = by_reviewer.json()
    assert body["state"] == "approved"
    assert [(a["identity"], a["comment"]) for a in body["approvals"]] == [
        ("reviewer", "checked on staging")
    ]
    events = served.context.store.events()
    refused = [e for e in events if e.kind == EventKind.APPROVAL_REFUSED.value]
    granted = [e for e in events if e.kind == EventKind.APPROVAL_GRANTED.value]
    assert [e.data["code"] for e in refused] == ["author"]
    assert [(e.actor, e.data["via"]) for e in granted] == [("reviewer", "http")]
    again = served.client.post(url, json={}, headers=served.as_user("reviewer"))
    assert again.status_code == 409


def test_deciding_needs_the_approve_action(served: ServerUnderTest, waiting: int) -> None:
    url = f"/api/v1/runs/{waiting}/reject"
    assert served.client.post(url, json={}).status_code == 401
    for role in ("viewer", "developer"):
        assert served.client.post(url, json={}, headers=served.as_user(role)).status_code == 403
    # An admin may call it, but production's approvers are reviewers: the ledger refuses.
    admin = served.client.post(url, json={}, headers=served.as_user("admin"))
    assert admin.status_code == 403 and admin.json()["error"] == "not-allowed"
    rejected = served.client.post(
        url, json={"comment": "freeze week"}, headers=served.as_user("reviewer")
    )
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"


def test_a_replayed_nonce_is_refused(served: ServerUnderTest, waiting: int) -> None:
    url = f"/api/v1/runs/{waiting}/approve"
    headers = {**served.as_user("reviewer"), "X-Conveyor-Nonce": "once-only-0001"}
    assert served.client.post(url, json={}, headers=headers).status_code == 200
    replay = served.client.post(url, json={}, headers=headers)
    assert replay.status_code == 400 and replay.json()["error"] == "replay"


def test_a_session_caller_decides_as_the_users_file_entry(
    served: ServerUnderTest, waiting: int
) -> None:
    from conveyor.approvals.users import Authenticated, NotAuthenticated
    from conveyor.server.auth import Principal, approval_identity

    session = Principal(name="reviewer", roles=frozenset({"reviewer"}), via="session")
    found = approval_identity(served.context, session)
    assert isinstance(found, Authenticated) and found.user.email == "reviewer@example.org"
    stranger = approval_identity(
        served.context, Principal(name="nobody", roles=frozenset({"reviewer"}), via="session")
    )
    assert isinstance(stranger, NotAuthenticated)
    with pytest.raises(service.ApprovalRefused) as refused:
        service.decide(
            served.context.store,
            served.context.users_file,
            waiting,
            Verdict.APPROVE,
            service.Credentials(None, "nonce-0001", time.time(), "http"),
            identity=stranger,
        )
    assert refused.value.code is Refusal.UNKNOWN_TOKEN
    approved = service.decide(
        served.context.store,
        served.context.users_file,
        waiting,
        Verdict.APPROVE,
        service.Credentials(None, "nonce-0002", time.time(), "http"),
        identity=found,
    )
    assert approved.approvals[0].identity == "reviewer"
