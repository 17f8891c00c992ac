"""The approvals HTTP API, served by a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from approvals.conftest import Gate
from conveyor.server.approvals import create_app
from conveyor.store.records import EventKind
from flags.serving import serving


@dataclass(frozen=True)
class Api:
    gate: Gate
    http: httpx.Client

    def post(
        self,
        path: str,
        who: str | None,
        body: dict[str, Any] | None = None,
        *,
        nonce: str | None = None,
        timestamp: float | None = None,
    ) -> httpx.Response:
        headers = {
            "X-Conveyor-Nonce": nonce or secrets.token_hex(16),
            "X-Conveyor-Timestamp": str(time.time() if timestamp is None else timestamp),
        }
        if who is not None:
            headers["Authorization"] = f"Bearer {self.gate.tokens.get(who, who)}"
        return self.http.post(path, json=body or {}, headers=headers)

    def refused_codes(self) -> list[str]:
        return [e.data["code"] for e in self.gate.events(EventKind.APPROVAL_REFUSED)]


@pytest.fixture
def api(gate: Gate) -> Iterator[Api]:
    with (
        serving(create_app(gate.store, gate.users_file)) as url,
        httpx.Client(base_url=url) as http,
    ):
        yield Api(gate, http)


def test_an_approval_answers_the_new_state(api: Api) -> None:
    run = api.gate.run()
    api.gate.request(run, required=2)

    answer = api.post(f"/runs/{run}/approve", "bob", {"comment": "tested on staging"})

    assert answer.status_code == 200
    body = answer.json()
    assert (body["run_id"], body["environment"], body["state"]) == (run, "production", "pending")
    assert [(a["identity"], a["comment"]) for a in body["approvals"]] == [
        ("bob", "tested on staging")
    ]
    granted = api.gate.events(EventKind.APPROVAL_GRANTED)
    assert [(e.actor, e.data["via"]) for e in granted] == [("bob", "http")]


def test_a_rejection_names_who_and_why(api: Api) -> None:
    run = api.gate.run()
    api.gate.request(run)

    answer = api.post(f"/runs/{run}/reject", "carol", {"comment": "freeze week"})

    assert answer.status_code == 200
    assert answer.json()["state"] == "rejected"
    assert answer.json()["rejection"]["identity"] == "carol"


def test_the_status_needs_a_token(api: Api) -> None:
    run = api.gate.run()
    api.gate.request(run)
    bob = {"Authorization": f"Bearer {api.gate.tokens['bob']}"}

    shown = api.http.get(f"/runs/{run}/approvals", headers=bob)
    anonymous = api.http.get(f"/runs/{run}/approvals")
    missing = api.http.get("/runs/999/approvals", headers=bob)

    assert shown.status_code == 200
    assert [(s["environment"], s["state"], s["approvers"]) for s in shown.json()] == [
        ("production", "pending", "role reviewer")
    ]
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "unknown-token")
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("who", "status", "error"),
    [
        (None, 401, "unknown-token"),
        ("cvy_0123456789ab_nope", 401, "unknown-token"),
        ("ada", 403, "author"),
        ("tom", 403, "triggerer"),
        ("dave", 403, "not-allowed"),
    ],
)
def test_refusals_answer_their_status_with_a_reason_and_are_recorded(
    api: Api, who: str | None, status: int, error: str
) -> None:
    run = api.gate.run()
    api.gate.request(run)

    answer = api.post(f"/runs/{run}/approve", who)

    assert (answer.status_code, answer.json()["error"]) == (status, error)
    assert answer.json()["reason"]
    # Without a proven token nothing is recorded: anonymous calls cannot fill the log.
    assert api.refused_codes() == ([] if status == 401 else [error])


def test_a_wrong_secret_is_unauthorized(api: Api) -> None:
    run = api.gate.run()
    api.gate.request(run)
    real = api.gate.tokens["bob"]

    answer = api.post(f"/runs/{run}/approve", real[: real.rindex("_")] + "_forged")

    assert (answer.status_code, answer.json()["error"]) == (401, "wrong-secret")


def test_a_missing_run_or_request_is_not_found(api: Api) -> None:
    quiet = api.gate.run()

    no_run = api.post("/runs/999/approve", "bob")
    no_request = api.post(f"/runs/{quiet}/approve", "bob")

    assert (no_run.status_code, no_run.json()["error"]) == (404, "no-run")
    assert (no_request.status_code, no_request.json()["error"]) == (404, "no-request")


def test_deciding_twice_or_after_the_decision_is_a_conflict(api: Api) -> None:
    run = api.gate.run()
    api.gate.request(run, required=2)
    api.post(f"/runs/{run}/approve", "bob")

    twice = api.post(f"/runs/{run}/approve", "bob")
    api.post(f"/runs/{run}/approve", "carol")
    after = api.post(f"/runs/{run}/reject", "erin")

    assert (twice.status_code, twice.json()["error"]) == (409, "already-decided")
    assert (after.status_code, after.json()["error"]) == (409, "closed")


def test_a_replayed_request_is_refused_and_recorded(api: Api) -> None:
    run = api.gate.run()
    api.gate.request(run, required=2)
    first = api.post(f"/runs/{run}/approve", "bob", nonce="0f1e2d3c4b5a6978")

    replayed = api.post(f"/runs/{run}/approve", "carol", nonce="0f1e2d3c4b5a6978")

    assert first.status_code == 200
    assert (replayed.status_code, replayed.json()["error"]) == (400, "replay")
    assert "used before" in replayed.json()["reason"]
    assert api.refused_codes() == ["replay"]
    assert len(api.gate.events(EventKind.APPROVAL_GRANTED)) == 1


@pytest.mark.parametrize("skew", [-301.0, 301.0])
def test_a_stale_timestamp_is_refused_as_a_replay(api: Api, skew: float) -> None:
    run = api.gate.run()
    api.gate.request(run)

    answer = api.post(f"/runs/{run}/approve", "bob", timestamp=time.time() + skew)

    assert (answer.status_code, answer.json()["error"]) == (400, "stale")
    assert api.refused_codes() == ["stale"]
    assert api.gate.events(EventKind.APPROVAL_GRANTED) == []


def test_headers_without_a_nonce_or_timestamp_are_refused(api: Api) -> None:
    run = api.gate.run()
    api.gate.request(run)
    bob = {"Authorization": f"Bearer {api.gate.tokens['bob']}"}

    no_nonce = api.http.post(
        f"/runs/{run}/approve", json={}, headers={**bob, "X-Conveyor-Timestamp": str(time.time())}
    )
    no_time = api.http.post(
        f"/runs/{run}/approve", json={}, headers={**bob, "X-Conveyor-Nonce": "a1b2c3d4e5f6"}
    )

    assert (no_nonce.status_code, no_nonce.json()["error"]) == (400, "replay")
    assert (no_time.status_code, no_time.json()["error"]) == (400, "stale")


def written(api: Api) -> tuple[int, int]:
    """How many events and audit entries the store holds."""
    return len(api.gate.store.events()), len(api.gate.store.audit_entries())


def test_anonymous_calls_are_refused_before_anything_is_written(api: Api) -> None:
    run = api.gate.run()
    api.gate.request(run)
    bob = api.gate.tokens["bob"]
    forged = bob[: bob.rindex("_")] + "_forged"
    before = written(api)

    answers = [
        api.http.post(f"/runs/{run}/approve", json={"comment": "let me in"}, headers=headers)
        for headers in (
            {},
            {"Authorization": "Bearer nonsense"},
            {"Authorization": "Basic Ym9iOmJvYg=="},
            {"Authorization": "Bearer cvy_0123456789ab_guess"},
            {"Authorization": f"Bearer {forged}"},
        )
        for _ in range(5)
    ]

    assert len(answers) == 25
    assert {a.status_code for a in answers} == {401}
    assert written(api) == before
    assert "let me in" not in "".join(a.text for a in answers)


def test_a_revoked_token_is_refused_and_its_use_recorded(api: Api) -> None:
    from datetime import UTC, datetime

    from conveyor.approvals.users import revoke_token

    run = api.gate.run()
    api.gate.request(run)
    token = api.gate.tokens["bob"]
    revoke_token(api.gate.users_file, "bob", token.split("_")[1], datetime.now(UTC))

    answer = api.post(f"/runs/{run}/approve", "bob")

    assert (answer.status_code, answer.json()["error"]) == (401, "revoked-token")
    assert api.refused_codes() == ["revoked-token"]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_64_kib_is_refused_with_413_and_nothing_written(
    api: Api, chunked: bool
) -> None:
    run = api.gate.run()
    api.gate.request(run)
    body = b'{"comment": "' + b"x" * (65 * 1024) + b'"}'
    headers = {
        "Authorization": f"Bearer {api.gate.tokens['bob']}",
        "Content-Type": "application/json",
        "X-Conveyor-Nonce": secrets.token_hex(16),
        "X-Conveyor-Timestamp": str(time.time()),
    }
    before = written(api)

    content = iter([body[:1000], body[1000:]]) if chunked else body
    answer = api.http.post(f"/runs/{run}/approve", content=content, headers=headers)

    assert answer.status_code == 413
    assert answer.json()["error"] == "too-large"
    assert written(api) == before


@pytest.mark.parametrize(
    "content",
    [
        b'{"comment": "' + b"SECRET-MARK-" * 200 + b'"}',  # longer than 2000 characters
        b'{"environment": ["SECRET-MARK-list"]}',
        b"SECRET-MARK-not-json",
    ],
)
def test_an_invalid_body_is_422_without_its_input(api: Api, content: bytes) -> None:
    run = api.gate.run()
    api.gate.request(run)
    headers = {
        "Authorization": f"Bearer {api.gate.tokens['bob']}",
        "Content-Type": "application/json",
        "X-Conveyor-Nonce": secrets.token_hex(16),
        "X-Conveyor-Timestamp": str(time.time()),
    }

    answer = api.http.post(f"/runs/{run}/approve", content=content, headers=headers)

    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid"
    assert "SECRET-MARK" not in answer.text
    assert "input" not in answer.json()


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/redoc"])
def test_the_docs_are_for_token_holders_only(api: Api, path: str) -> None:
    bob = {"Authorization": f"Bearer {api.gate.tokens['bob']}"}

    anonymous = api.http.get(path)
    shown = api.http.get(path, headers=bob)

    assert anonymous.status_code == 401
    assert shown.status_code == 200


def test_health_needs_no_token(api: Api) -> None:
    assert api.http.get("/healthz").json() == {"status": "ok"}
