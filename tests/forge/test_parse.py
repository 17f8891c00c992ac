"""Each forge's push and pull/merge request payloads into one `ForgeEvent`; what asks for
no run is `Ignored` with a reason; what is not a documented payload is `Malformed`."""

from __future__ import annotations

import json

import pytest

from conveyor.forge.gitea import Gitea
from conveyor.forge.github import GitHub
from conveyor.forge.gitlab import GitLab
from conveyor.forge.model import EventKind, ForgeEvent, Ignored, Malformed, MergeRequest
from forge.payloads import (
    SHA,
    ZERO,
    body_of,
    gitea_headers,
    gitea_pull_request,
    gitea_push,
    github_headers,
    github_pull_request,
    github_push,
    gitlab_headers,
    gitlab_merge_request,
    gitlab_push,
)


def test_github_push() -> None:
    body = body_of(github_push())
    headers = github_headers(body)
    event = GitHub().parse(headers, body)
    assert event == ForgeEvent(
        forge="github",
        kind=EventKind.PUSH,
        delivery_id=headers["x-github-delivery"],
        repository="acme/shop",
        clone_urls=(
            "https://github.com/acme/shop.git",
            "git@github.com:acme/shop.git",
            "git://github.com/acme/shop.git",
            "https://github.com/acme/shop",
        ),
        ref="refs/heads/main",
        branch="main",
        commit_sha=SHA,
        sender="ada",
    )


def test_github_pull_request_runs_on_its_head() -> None:
    body = body_of(github_pull_request("synchronize"))
    event = GitHub().parse(github_headers(body, "pull_request"), body)
    assert isinstance(event, ForgeEvent)
    assert (event.kind, event.ref, event.branch, event.commit_sha, event.sender) == (
        EventKind.MERGE_REQUEST,
        "refs/pull/42/head",
        "faster-cart",
        SHA,
        "grace",
    )
    assert event.repository == "acme/shop"  # the base repository, not the fork
    assert event.merge_request == MergeRequest(42, SHA, "faster-cart", "main", "synchronize")


def test_gitlab_push_and_merge_request() -> None:
    push = GitLab().parse(gitlab_headers(), body_of(gitlab_push()))
    assert isinstance(push, ForgeEvent)
    assert (push.repository, push.branch, push.commit_sha, push.sender) == (
        "acme/shop",
        "main",
        SHA,
        "jsmith",
    )
    assert push.clone_urls[0] == "https://gitlab.example.com/acme/shop.git"
    headers = gitlab_headers("Merge Request Hook")
    request = GitLab().parse(headers, body_of(gitlab_merge_request("update", oldrev=SHA)))
    assert isinstance(request, ForgeEvent)
    assert request.ref == "refs/merge-requests/7/head"
    assert request.delivery_id == headers["x-gitlab-event-uuid"]
    assert request.merge_request == MergeRequest(7, SHA, "faster-cart", "main", "update")


def test_gitlab_prefers_the_idempotency_key_kept_across_retries() -> None:
    headers = gitlab_headers() | {"idempotency-key": "f1b2"}
    assert GitLab().delivery_id(headers) == "f1b2"


@pytest.mark.parametrize("brand", ["gitea", "forgejo"])
def test_gitea_push_and_pull_request(brand: str) -> None:
    body = body_of(gitea_push())
    headers = gitea_headers(body, brand=brand)
    push = Gitea(brand).parse(headers, body)
    assert isinstance(push, ForgeEvent)
    assert (push.forge, push.repository, push.branch, push.commit_sha, push.sender) == (
        brand,
        "gitea/webhooks",
        "develop",
        SHA,
        "gitea",
    )
    assert push.delivery_id == headers[f"x-{brand}-delivery"]
    body = body_of(gitea_pull_request("synchronized"))
    request = Gitea(brand).parse(gitea_headers(body, "pull_request", brand=brand), body)
    assert isinstance(request, ForgeEvent)
    assert request.merge_request == MergeRequest(3, SHA, "feature/faster", "main", "synchronized")


@pytest.mark.parametrize(
    ("forge", "headers", "payload", "reason"),
    [
        (GitHub(), {"x-github-event": "push"}, github_push(ZERO), "was deleted"),
        (GitHub(), {"x-github-event": "push"}, github_push(ref="refs/tags/v1"), "not a branch"),
        (GitHub(), {"x-github-event": "ping"}, {"zen": "Keep it simple."}, "ping events"),
        (GitHub(), {"x-github-event": "pull_request"}, github_pull_request("closed"), "closed"),
        (GitLab(), {"x-gitlab-event": "Push Hook"}, gitlab_push(ZERO), "was deleted"),
        (GitLab(), {"x-gitlab-event": "Tag Push Hook"}, gitlab_push(), "Tag Push Hook"),
        (
            GitLab(),
            {"x-gitlab-event": "Merge Request Hook"},
            gitlab_merge_request("update"),  # a title edit: no oldrev, no new commits
            "no new commits",
        ),
        (Gitea(), {"x-gitea-event": "push"}, gitea_push(ZERO), "was deleted"),
        (Gitea(), {"x-gitea-event": "delete"}, {"ref": "x", "ref_type": "branch"}, "deleted"),
    ],
)
def test_what_asks_for_no_run_is_ignored_with_a_reason(
    forge: GitHub | GitLab | Gitea, headers: dict[str, str], payload: object, reason: str
) -> None:
    parsed = forge.parse(headers, json.dumps(payload).encode())
    assert isinstance(parsed, Ignored)
    assert reason in parsed.reason


HOSTILE_BRANCHES = [
    "main;rm -rf /",
    "$(touch PWNED)",
    "a..b",
    "-upload-pack=evil",
    "a b",
    ".hidden",
    "x.lock",
    "a//b",
    "tail/",
    "@",
    "a@{1}",
    "back\\slash",
    "new\nline",
]


@pytest.mark.parametrize("branch", HOSTILE_BRANCHES)
def test_a_hostile_branch_name_is_malformed(branch: str) -> None:
    body = body_of(github_push(ref=f"refs/heads/{branch}"))
    with pytest.raises(Malformed, match="invalid branch name"):
        GitHub().parse({"x-github-event": "push"}, body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe", "not JSON"),
        (body_of({"ref": "refs/heads/main"}), "after is missing"),
        (body_of(github_push(sha="abc")), "not a full hex commit id"),
        (body_of(github_push(sha="G" * 40)), "not a full hex commit id"),
        (body_of({**github_push(), "repository": {"full_name": 7}}), "not a str"),
        (body_of({**github_push(), "deleted": "yes"}), None),  # a string is not a bool
    ],
)
def test_malformed_payloads(body: bytes, reason: str | None) -> None:
    if reason is None:
        assert isinstance(GitHub().parse({"x-github-event": "push"}, body), ForgeEvent)
        return
    with pytest.raises(Malformed, match=reason):
        GitHub().parse({"x-github-event": "push"}, body)


def test_a_delivery_without_its_event_header_is_malformed() -> None:
    for forge in (GitHub(), GitLab(), Gitea()):
        with pytest.raises(Malformed, match="header"):
            forge.parse({}, body_of(github_push()))
