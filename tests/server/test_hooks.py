"""The forges' webhooks on a real server: a signed push queues exactly its commit and
branch, fetched from the configured repository; every bad delivery is refused or ignored
with a reason, recorded, and queues nothing."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from conveyor.store.records import EventKind
from forge.payloads import (
    SECRET,
    ZERO,
    gitea_pull_request,
    gitea_push,
    github_headers,
    github_pull_request,
    github_push,
    gitlab_merge_request,
    gitlab_push,
)
from server.forges import REPOSITORY, ForgeServer, MakeForgeServer, git, make_forge_server

__all__ = ["make_forge_server"]  # the fixture, used by name


@pytest.fixture
def forge(make_forge_server: MakeForgeServer) -> ForgeServer:
    # No workers: these tests read the queue as the webhook left it, before any claim.
    return make_forge_server("github", workers=0)


def _push(sha: str, branch: str, **repository: str) -> dict[str, object]:
    return github_push(sha, f"refs/heads/{branch}", **{"full_name": REPOSITORY, **repository})


def test_a_signed_push_queues_its_commit_from_the_configured_repository(
    forge: ForgeServer,
) -> None:
    sha = forge.commit_and_push("feature/cart")
    body = json.dumps(_push(sha, "feature/cart")).encode()
    headers = github_headers(body)

    answer = forge.deliver(body, headers)

    assert answer.status_code == 202, answer.text
    assert answer.json()["outcome"] == "queued"
    [entry] = forge.queue()
    assert (entry["commit_sha"], entry["branch"], entry["state"]) == (sha, "feature/cart", "queued")
    # Fetched from the configured bare repository, not the payload's github.com URL.
    assert entry["repository"] == os.fspath(forge.mirror)
    assert git(forge.mirror, "cat-file", "-t", sha) == "commit"
    assert entry["trigger"] == {
        "kind": "push",
        "forge": "github",
        "delivery": headers["x-github-delivery"],
        "repository": REPOSITORY,
        "ref": "refs/heads/feature/cart",
        "sender": "ada",
    }
    assert entry["actor"] == "ada"
    [delivery] = forge.deliveries()
    assert (delivery["outcome"], delivery["queue_id"]) == ("queued", entry["id"])
    assert forge.events(EventKind.WEBHOOK_DELIVERY.value)[-1]["data"]["outcome"] == "queued"


def test_a_pull_request_runs_on_its_head_and_says_so(forge: ForgeServer) -> None:
    # The forge keeps a pull request's head under refs/pull/<n>/head of the base repository.
    head = forge.commit_and_push("faster-cart", ref="refs/pull/42/head")
    payload = github_pull_request("opened", head)

    answer = forge.deliver(payload, event="pull_request")

    assert answer.status_code == 202, answer.text
    [entry] = forge.queue()
    assert (entry["commit_sha"], entry["branch"]) == (head, "faster-cart")
    assert entry["trigger"]["kind"] == "merge_request"
    assert entry["trigger"]["merge_request"] == 42
    assert entry["trigger"]["target_branch"] == "main"


@pytest.mark.parametrize("kind", ["gitlab", "gitea", "forgejo"])
def test_gitlab_gitea_and_forgejo_pushes_queue_too(
    make_forge_server: MakeForgeServer, kind: str
) -> None:
    forge = make_forge_server(kind, workers=0)
    sha = forge.commit_and_push("main")
    payload = gitlab_push(sha) if kind == "gitlab" else gitea_push(sha, "refs/heads/main")
    if kind == "gitlab":
        payload["project"]["path_with_namespace"] = REPOSITORY
    else:
        payload["repository"]["full_name"] = REPOSITORY

    answer = forge.deliver(payload)

    assert answer.status_code == 202, answer.text
    [entry] = forge.queue()
    assert (entry["commit_sha"], entry["branch"], entry["trigger"]["forge"]) == (sha, "main", kind)


def test_a_gitlab_merge_request_runs_on_its_head(make_forge_server: MakeForgeServer) -> None:
    forge = make_forge_server("gitlab", workers=0)
    head = forge.commit_and_push("faster-cart", ref="refs/merge-requests/7/head")
    payload = gitlab_merge_request("open")
    payload["project"]["path_with_namespace"] = REPOSITORY
    payload["object_attributes"]["last_commit"]["id"] = head

    answer = forge.deliver(payload, event="Merge Request Hook")

    assert answer.status_code == 202, answer.text
    [entry] = forge.queue()
    assert (entry["commit_sha"], entry["branch"], entry["trigger"]["merge_request"]) == (
        head,
        "faster-cart",
        7,
    )


def test_a_gitea_pull_request_from_another_repository_is_ignored(
    make_forge_server: MakeForgeServer,
) -> None:
    forge = make_forge_server("gitea", workers=0)
    answer = forge.deliver(gitea_pull_request(), event="pull_request")
    assert (answer.status_code, answer.json()["outcome"]) == (202, "ignored")
    assert "unknown repository gitea/webhooks" in answer.json()["reason"]
    assert forge.queue() == []


def _chunks(size: int) -> Iterator[bytes]:
    for _ in range(size // 65536 + 1):
        yield b" " * 65536


def _bad_deliveries(forge: ForgeServer, sha: str) -> dict[str, tuple[int, str, str]]:
    """name -> (HTTP status, outcome, a word of the reason), each sent once."""
    good = json.dumps(_push(sha, "main")).encode()
    cases: dict[str, tuple[int, str, str]] = {}

    def send(name: str, body: bytes, headers: dict[str, str], *expected: str | int) -> None:
        answer = forge.deliver(body, headers)
        assert answer.status_code == expected[0], (name, answer.text)
        assert answer.json()["outcome"] == expected[1], (name, answer.text)
        assert str(expected[2]) in answer.json()["reason"], (name, answer.text)
        cases[name] = (answer.status_code, str(expected[1]), str(expected[2]))

    unsigned = {k: v for k, v in github_headers(good).items() if k != "x-hub-signature-256"}
    send("unsigned", good, unsigned, 401, "unauthorized", "unsigned")
    send("wrong secret", good, github_headers(good, secret="guess"), 401, "unauthorized", "wrong")
    tampered = github_headers(good)
    send("tampered", good.replace(b"main", b"evil"), tampered, 401, "unauthorized", "wrong")
    send("not json", b"{oops", github_headers(b"{oops"), 400, "malformed", "not JSON")
    no_id = {k: v for k, v in github_headers(good).items() if k != "x-github-delivery"}
    send("no delivery id", good, no_id, 400, "malformed", "no delivery id")
    hostile = json.dumps(_push(sha, "x..y;$(reboot)")).encode()
    send("hostile branch", hostile, github_headers(hostile), 400, "malformed", "invalid branch")
    other = json.dumps(_push(sha, "main", full_name="mallory/shop", clone_url="https://x/y.git"))
    send("unknown repository", other.encode(), github_headers(other.encode()), 202, "ignored",
         "unknown repository mallory/shop")  # fmt: skip
    deleted = json.dumps(_push(ZERO, "main")).encode()
    send("deletion", deleted, github_headers(deleted), 202, "ignored", "was deleted")
    tag = json.dumps(github_push(sha, "refs/tags/v1", full_name=REPOSITORY)).encode()
    send("tag", tag, github_headers(tag), 202, "ignored", "not a branch")
    unlisted = json.dumps(_push(sha, "experiment")).encode()
    send(
        "unknown branch",
        unlisted,
        github_headers(unlisted),
        202,
        "ignored",
        "not in forge.branches",
    )
    absent = json.dumps(_push("1" * 40, "main")).encode()
    send("commit not there", absent, github_headers(absent), 502, "failed", "is not on")
    huge = b"{" + b" " * (1024 * 1024) + b"}"
    send("oversized", huge, github_headers(huge), 413, "too_large", "larger than")
    answer = forge.served.client.post(
        "/hooks/github", content=_chunks(1024 * 1024 + 1), headers=github_headers(b"")
    )
    assert (answer.status_code, answer.json()["outcome"]) == (413, "too_large")
    cases["oversized, chunked"] = (413, "too_large", "larger than")
    return cases


def test_bad_deliveries_are_refused_or_ignored_and_queue_nothing(forge: ForgeServer) -> None:
    sha = git(forge.work, "rev-parse", "HEAD")

    cases = _bad_deliveries(forge, sha)

    assert forge.queue() == []
    recorded = [(d["status_code"], d["outcome"]) for d in forge.deliveries()]
    assert recorded == [(status, outcome) for status, outcome, _ in cases.values()]
    events = forge.events(EventKind.WEBHOOK_DELIVERY.value)
    assert [e["data"]["outcome"] for e in events] == [o for _, o, _ in cases.values()]
    assert all(SECRET not in json.dumps(e["data"]) for e in events)


def test_a_replayed_delivery_is_dropped(forge: ForgeServer) -> None:
    sha = forge.commit_and_push("main")
    body = json.dumps(_push(sha, "main")).encode()
    headers = github_headers(body)
    assert forge.deliver(body, headers).status_code == 202

    again = forge.deliver(body, headers)  # the same delivery id: a redelivery or a replay
    fresh_id = forge.deliver(body, github_headers(body))  # the captured body, a new id

    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    assert (fresh_id.status_code, fresh_id.json()["outcome"]) == (200, "duplicate")
    assert "duplicate" in again.json()["reason"]
    assert len(forge.queue()) == 1


def test_a_failed_fetch_may_be_delivered_again(forge: ForgeServer) -> None:
    sha = forge.commit_and_push("feature/late", ref="refs/heads/elsewhere")
    body = json.dumps(_push(sha, "feature/late")).encode()
    headers = github_headers(body)
    assert forge.deliver(body, headers).status_code == 502  # not on the branch yet

    git(forge.work, "push", "-q", "origin", "HEAD:refs/heads/feature/late")
    answer = forge.deliver(body, headers)

    assert (answer.status_code, answer.json()["outcome"]) == (202, "queued")
    assert [e["commit_sha"] for e in forge.queue()] == [sha]


def test_a_delivery_to_another_forges_path_is_refused(forge: ForgeServer) -> None:
    sha = forge.commit_and_push("main")
    body = json.dumps(_push(sha, "main")).encode()
    answer = forge.served.client.post("/hooks/gitlab", content=body, headers=github_headers(body))
    assert answer.status_code == 401
    assert "forge is github, not gitlab" in answer.json()["reason"]
    assert forge.queue() == []


def test_deliveries_are_listed_for_admins_only(forge: ForgeServer) -> None:
    sha = forge.commit_and_push("main")
    body = json.dumps(_push(sha, "main")).encode()
    forge.deliver(body)
    forge.deliver(b"{}", {"x-github-event": "push", "x-github-delivery": "nope"})
    forge.deliver(body, github_headers(body, secret="guess"))
    client = forge.served.client
    path = "/api/v1/hooks/deliveries"

    assert client.get(path).status_code == 401
    assert client.get(path, headers=forge.served.as_user("developer")).status_code == 403
    first = client.get(path, params={"limit": 2}, headers=forge.served.as_user("admin")).json()
    rest = client.get(
        path,
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=forge.served.as_user("admin"),
    ).json()

    outcomes = [d["outcome"] for d in first["items"] + rest["items"]]
    assert outcomes == ["unauthorized", "unauthorized", "queued"]  # newest first
    assert rest["next_cursor"] is None
    assert first["counts"]["unauthorized"] == 2 and first["counts"]["queued"] == 1
    assert first["counts"]["duplicate"] == 0


def test_no_secret_configured_refuses_everything(
    forge: ForgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVEYOR_FORGE_SECRET")
    forge.served.context.parts.pop("hooks", None)  # read the settings again
    sha = git(forge.work, "rev-parse", "HEAD")
    body = json.dumps(_push(sha, "main")).encode()
    answer = forge.deliver(body)
    assert answer.status_code == 401 and "CONVEYOR_FORGE_SECRET" in answer.json()["reason"]
    assert forge.queue() == []


def test_the_secret_may_live_in_the_state_folder(
    forge: ForgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVEYOR_FORGE_SECRET")
    forge.served.context.parts.pop("hooks", None)
    env_file = forge.served.context.project.state_dir / "forge.env"
    env_file.write_text(f'CONVEYOR_FORGE_SECRET="{SECRET}"\n')
    env_file.chmod(0o600)
    sha = forge.commit_and_push("main")
    answer = forge.deliver(json.dumps(_push(sha, "main")).encode())
    assert answer.status_code == 202, answer.text
    subprocess.run(["git", "-C", os.fspath(forge.mirror), "cat-file", "-e", sha], check=True)


def test_the_same_delivery_sent_at_once_is_queued_once(forge: ForgeServer) -> None:
    sha = forge.commit_and_push("main")
    body = json.dumps(_push(sha, "main")).encode()
    headers = github_headers(body)
    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(lambda _: forge.deliver(body, headers), range(5)))
    assert sorted(a.json()["outcome"] for a in answers) == ["duplicate"] * 4 + ["queued"]
    assert len(forge.queue()) == 1
