"""Commit statuses follow a forge-triggered run on a real server, sent to a local fake of
the forge's API: pending when queued (linking to the queue entry), then the run's result
(linking to the run); a forge that is down is retried and given up, the run unaffected.

The first test follows a run the server's workers make; the others start the server
with no worker and record the run a worker would make in the store directly, to choose
its end."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import wait_until
from conveyor.forge.statuses import Backoff
from conveyor.server import statuses
from conveyor.states import RunState
from conveyor.store.records import EventKind, NewJob, NewRun
from forge.fake_forge import fake_forge
from forge.payloads import github_push
from server.forges import REPOSITORY, ForgeServer, MakeForgeServer, make_forge_server

__all__ = ["make_forge_server"]


def _queue_a_push(forge: ForgeServer) -> tuple[str, dict[str, Any]]:
    sha = forge.commit_and_push("main")
    body = json.dumps(github_push(sha, "refs/heads/main", full_name=REPOSITORY)).encode()
    answer = forge.deliver(body)
    assert answer.status_code == 202, answer.text
    [entry] = forge.queue()
    return sha, entry


def _run_it(forge: ForgeServer, sha: str, entry: dict[str, Any], state: RunState) -> int:
    """What a worker records: the run of the queue entry, then its end."""
    store = forge.served.context.store
    meta = NewRun(pipeline="demo", commit_sha=sha, branch="main", trigger=entry["trigger"])
    run_id = store.create_run(meta, [NewJob(job_id="build", name="build")])
    store.set_run_state(run_id, state)
    return run_id


def test_statuses_follow_a_run_from_queued_to_passed(make_forge_server: MakeForgeServer) -> None:
    with fake_forge("github") as fake:
        forge = make_forge_server("github", api_url=fake.url)
        url = forge.served.url
        sha, entry = _queue_a_push(forge)
        wait_until(lambda: fake.accepted, "the pending status")
        run_id = wait_until(lambda: forge.queue()[0]["run_id"], "the worker's run")
        wait_until(lambda: fake.accepted[-1].body["state"] == "success", "the final status")

    assert all(seen.problem is None for seen in fake.seen)
    first, last = fake.accepted[0], fake.accepted[-1]
    assert first.path == f"/repos/{REPOSITORY}/statuses/{sha}"
    assert first.body == {
        "state": "pending",
        "target_url": f"{url}/queue/{entry['id']}",
        "description": "Conveyor: demo queued",
        "context": "conveyor/demo",
    }
    assert last.body["target_url"] == f"{url}/runs/{run_id}"
    assert last.body["context"] == "conveyor/demo"
    sent = forge.events(EventKind.FORGE_STATUS.value)
    assert [e["data"]["outcome"] for e in sent] == ["sent"] * len(fake.accepted)
    assert sent[-1]["state"] == "success" and sent[-1]["run_id"] == run_id


def test_a_failed_run_is_a_failure_status_on_gitlab(make_forge_server: MakeForgeServer) -> None:
    with fake_forge("gitlab") as fake:
        forge = make_forge_server("gitlab", api_url=fake.url + "/api/v4", workers=0)
        sha = forge.commit_and_push("main")
        payload: dict[str, Any] = json.loads(json.dumps(_gitlab_push(sha)))
        assert forge.deliver(payload).status_code == 202
        [entry] = forge.queue()
        wait_until(lambda: fake.accepted, "the pending status")
        _run_it(forge, sha, entry, RunState.FAILED)
        wait_until(lambda: fake.accepted[-1].body["state"] == "failed", "the final status")
    assert all(seen.problem is None for seen in fake.seen)
    assert fake.accepted[0].body["name"] == "conveyor/demo"
    assert fake.accepted[0].body["ref"] == "main"
    assert fake.accepted[0].path == f"/api/v4/projects/acme%2Fshop/statuses/{sha}"


def _gitlab_push(sha: str) -> dict[str, Any]:
    from forge.payloads import gitlab_push

    payload = gitlab_push(sha)
    payload["project"]["path_with_namespace"] = REPOSITORY
    return payload


def test_a_forge_that_is_down_gets_retries_and_the_run_is_unaffected(
    make_forge_server: MakeForgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statuses, "BACKOFF", Backoff(attempts=3, first_delay=0.05, max_delay=0.1))
    with fake_forge("github", fail_first=1000) as fake:
        forge = make_forge_server("github", api_url=fake.url, workers=0)
        sha, entry = _queue_a_push(forge)
        run_id = _run_it(forge, sha, entry, RunState.FAILED)

        def given_up_final() -> list[dict[str, Any]]:
            found = forge.events(EventKind.FORGE_STATUS.value)
            return [e for e in found if e["state"] == "failure"]

        [final] = wait_until(given_up_final, "the final status to be given up")

    assert final["data"]["outcome"] == "given_up"
    assert final["data"]["attempts"] == 3
    assert final["data"]["reason"] == "gave up after 3 tries: HTTP 503"
    assert fake.seen and all(seen.answer == 503 for seen in fake.seen)
    # The run and its queue entry are as the worker left them.
    assert forge.served.context.store.get_run(run_id).state is RunState.FAILED
    assert [e["state"] for e in forge.queue()] == ["queued"]


def test_no_token_no_statuses_but_the_run_is_queued(
    make_forge_server: MakeForgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fake_forge("github") as fake:
        forge = make_forge_server("github", api_url=fake.url, workers=0)
        monkeypatch.delenv("CONVEYOR_FORGE_TOKEN")
        forge.served.context.parts.pop("hooks", None)
        _queue_a_push(forge)
        [event] = wait_until(lambda: forge.events(EventKind.FORGE_STATUS.value), "a status")
    assert event["data"]["outcome"] == "given_up"
    assert "CONVEYOR_FORGE_TOKEN" in event["data"]["reason"]
    assert fake.seen == []
