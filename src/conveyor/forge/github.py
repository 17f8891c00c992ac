"""GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, `X-GitHub-Event`
push / pull_request, `X-GitHub-Delivery` (a GUID); statuses through
`POST /repos/{owner}/{repo}/statuses/{sha}` with a bearer token; issues through
`POST /repos/{owner}/{repo}/issues` (title, body, label names)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.forge import refs
from conveyor.forge.common import (
    created_issue,
    merge_request_event,
    pushed_branch,
    repos_issue_request,
    repos_status_request,
    verify_signed,
)
from conveyor.forge.model import (
    CommitStatus,
    CreatedIssue,
    EventKind,
    ForgeEvent,
    Headers,
    Ignored,
    Malformed,
    MergeRequest,
    NewIssue,
    StatusRequest,
)
from conveyor.forge.payload import header, load_object, pick, pick_optional, urls
from conveyor.forge.signatures import check_hex_hmac

SIGNATURE = "x-hub-signature-256"
EVENT = "x-github-event"
DELIVERY = "x-github-delivery"
# Actions that put new code at the head of a pull request; the rest (closed, labeled,
# edited...) ask for no run.
RUN_ACTIONS = frozenset({"opened", "synchronize", "reopened"})


class GitHub:
    name = "github"
    default_api_url: str | None = "https://api.github.com"

    def verify(self, headers: Headers, body: bytes, secret: str, now: float) -> None:
        verify_hub_signature(headers, body, secret, now, SIGNATURE)

    def delivery_id(self, headers: Headers) -> str | None:
        return header(headers, DELIVERY, "webhook-id")

    def parse(self, headers: Headers, body: bytes) -> ForgeEvent | Ignored:
        event = header(headers, EVENT)
        if event is None:
            raise Malformed(f"no {EVENT} header")
        return parse_hub_event(self.name, event, self.delivery_id(headers) or "", body, RUN_ACTIONS)

    def merge_request_ref(self, number: int) -> str:
        return f"refs/pull/{number}/head"

    def status_request(self, api_url: str, token: str, status: CommitStatus) -> StatusRequest:
        headers = _api_headers(token)
        description = status.description[:140]  # GitHub's limit
        return repos_status_request(api_url, status, headers, description)

    def issue_request(self, api_url: str, token: str, issue: NewIssue) -> StatusRequest:
        body: dict[str, Any] = {"title": issue.title, "body": issue.body}
        if issue.labels:
            body["labels"] = list(issue.labels)
        return repos_issue_request(api_url, issue, _api_headers(token), body)

    def created_issue(self, answer: Any) -> CreatedIssue:
        return created_issue(answer, "number", "html_url")


def _api_headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }


def verify_hub_signature(
    headers: Headers, body: bytes, secret: str, now: float, *names: str, prefix: str = "sha256="
) -> None:
    """The forge's own HMAC header (the first of `names` sent) and, where sent, the
    Standard Webhooks signature; a delivery carrying neither is unsigned."""
    verify_signed(
        headers,
        body,
        secret,
        now,
        native=header(headers, *names),
        check_native=lambda sent: check_hex_hmac(sent, body, secret, prefix),
        unsigned="no signature header",
    )


def parse_hub_event(
    forge: str, event: str, delivery: str, body: bytes, run_actions: frozenset[str]
) -> ForgeEvent | Ignored:
    """GitHub's push and pull_request payloads; Gitea and Forgejo send the same shapes."""
    data = load_object(body)
    if event == "push":
        return _push(forge, delivery, data)
    if event == "pull_request":
        return _pull_request(forge, delivery, data, run_actions)
    return Ignored(f"{event} events start no run", delivery, event)


def _push(forge: str, delivery: str, data: Mapping[str, Any]) -> ForgeEvent | Ignored:
    ref = pick(data, "ref", str)
    after = pick(data, "after", str)
    deleted = bool(pick_optional(data, "deleted", bool))
    branch = pushed_branch(ref, after, deleted, delivery, "push")
    if isinstance(branch, Ignored):
        return branch
    return ForgeEvent(
        forge=forge,
        kind=EventKind.PUSH,
        delivery_id=delivery,
        repository=pick(data, "repository.full_name", str),
        clone_urls=_repository_urls(data, "repository"),
        ref=ref,
        branch=branch,
        commit_sha=refs.check_sha(after),
        sender=_sender(data),
    )


def _pull_request(
    forge: str, delivery: str, data: Mapping[str, Any], run_actions: frozenset[str]
) -> ForgeEvent | Ignored:
    action = pick(data, "action", str)
    number = pick(data, "number", int)
    if action not in run_actions:
        return Ignored(f"pull request #{number} {action}: no new commits", delivery, "pull_request")
    head = refs.check_sha(pick(data, "pull_request.head.sha", str), "pull_request.head.sha")
    source = refs.check_branch(pick(data, "pull_request.head.ref", str))
    request = MergeRequest(
        number=number,
        head_sha=head,
        source_branch=source,
        target_branch=refs.check_branch(pick(data, "pull_request.base.ref", str)),
        action=action,
    )
    return merge_request_event(
        forge,
        delivery,
        request,
        repository=pick(data, "repository.full_name", str),
        clone_urls=_repository_urls(data, "repository"),
        ref=f"refs/pull/{number}/head",
        sender=_sender(data),
    )


def _repository_urls(data: Mapping[str, Any], where: str) -> tuple[str, ...]:
    names = ("clone_url", "ssh_url", "git_url", "html_url")
    return urls(data, *(f"{where}.{name}" for name in names))


def _sender(data: Mapping[str, Any]) -> str:
    return (
        pick_optional(data, "sender.login", str)
        or pick_optional(data, "pusher.login", str)
        or pick_optional(data, "pusher.name", str)
        or "unknown"
    )


def from_site(_kind: str) -> GitHub:
    return GitHub()
