"""Commit statuses as each forge documents them, sent to a local fake of its API; a forge
that is down is retried with backoff, and a refusal is not."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from conveyor.forge.model import CommitStatus, Forge, StatusState
from conveyor.forge.registry import forge_named
from conveyor.forge.statuses import Backoff, StatusOutcome, post_status
from forge.fake_forge import TOKEN, FakeForge, fake_forge
from forge.payloads import SHA

API_ROOT = {"github": "", "gitlab": "/api/v4", "gitea": "/api/v1", "forgejo": "/api/v1"}
EXPECTED_STATE = {
    "github": {StatusState.PENDING: "pending", StatusState.RUNNING: "pending",
               StatusState.SUCCESS: "success", StatusState.FAILURE: "failure",
               StatusState.ERROR: "error"},
    "gitlab": {StatusState.PENDING: "pending", StatusState.RUNNING: "running",
               StatusState.SUCCESS: "success", StatusState.FAILURE: "failed",
               StatusState.ERROR: "canceled"},
    "gitea": {StatusState.PENDING: "pending", StatusState.RUNNING: "pending",
              StatusState.SUCCESS: "success", StatusState.FAILURE: "failure",
              StatusState.ERROR: "error"},
}  # fmt: skip


def _status(state: StatusState, repository: str = "acme/shop") -> CommitStatus:
    return CommitStatus(
        repository=repository,
        sha=SHA,
        state=state,
        context="conveyor/shop",
        target_url="http://conveyor.example/runs/7",
        description="Conveyor: shop passed",
        ref="main",
    )


def _send(
    forge: Forge, fake: FakeForge, status: CommitStatus, backoff: Backoff | None = None
) -> tuple[StatusOutcome, list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def send() -> StatusOutcome:
        async with httpx.AsyncClient() as client:
            api = fake.url + API_ROOT[forge.name]
            return await post_status(
                client, forge, api, TOKEN, status, backoff=backoff or Backoff(), sleep=sleep
            )

    return asyncio.run(send()), waits


@pytest.mark.parametrize("kind", ["github", "gitlab", "gitea"])
def test_every_state_in_the_documented_request(kind: str) -> None:
    forge = forge_named(kind)
    with fake_forge(kind) as fake:
        for state in StatusState:
            outcome, _ = _send(forge, fake, _status(state))
            assert outcome == StatusOutcome(True, 1, 201, "sent"), fake.seen[-1].problem
    assert [s.body["state"] for s in fake.accepted] == [
        EXPECTED_STATE[kind][s] for s in StatusState
    ]
    first = fake.accepted[0]
    context = "name" if kind == "gitlab" else "context"
    assert first.body[context] == "conveyor/shop"
    assert first.body["target_url"] == "http://conveyor.example/runs/7"
    assert first.body["description"] == "Conveyor: shop passed"
    if kind == "gitlab":
        assert first.path == f"/api/v4/projects/acme%2Fshop/statuses/{SHA}"
        assert first.body["ref"] == "main"
    else:
        assert first.path == f"{API_ROOT[kind]}/repos/acme/shop/statuses/{SHA}"
    assert first.headers["content-type"] == "application/json"


def test_forgejo_speaks_giteas_api() -> None:
    with fake_forge("gitea") as fake:
        outcome, _ = _send(forge_named("forgejo"), fake, _status(StatusState.SUCCESS))
    assert outcome.sent and fake.accepted[0].headers["authorization"] == f"token {TOKEN}"


def test_a_forge_that_is_down_is_retried_with_growing_waits() -> None:
    with fake_forge("github", fail_first=2) as fake:
        outcome, waits = _send(forge_named("github"), fake, _status(StatusState.PENDING))
    assert outcome == StatusOutcome(True, 3, 201, "sent")
    assert [s.answer for s in fake.seen] == [503, 503, 201]
    assert waits == [0.5, 1.0]


def test_an_unreachable_forge_is_given_up_after_capped_tries() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again before anyone connects
    fake = FakeForge("github", url=f"http://127.0.0.1:{port}")
    backoff = Backoff(attempts=5, first_delay=1.0, max_delay=3.0)
    outcome, waits = _send(forge_named("github"), fake, _status(StatusState.PENDING), backoff)
    assert not outcome.sent and outcome.attempts == 5 and outcome.http_status is None
    assert outcome.reason.startswith("gave up after 5 tries: ConnectError")
    assert waits == [1.0, 2.0, 3.0, 3.0]


def test_a_refusal_is_not_retried() -> None:
    with fake_forge("github") as fake:
        status = _status(StatusState.SUCCESS)
        forge = forge_named("github")
        outcome, waits = _send(forge, fake, status)
        assert outcome.sent
        wrong = forge.status_request(fake.url, "wrong-token", status)
        answer = httpx.post(wrong.url, headers=wrong.headers, json=wrong.json)
    assert answer.status_code == 422 and "Authorization" in (fake.seen[-1].problem or "")
    assert waits == []
