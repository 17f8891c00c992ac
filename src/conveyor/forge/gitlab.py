"""GitLab: `X-Gitlab-Token` (the secret itself, compared in constant time) or, from a
webhook with a signing token, the Standard Webhooks `webhook-signature`; `X-Gitlab-Event`
"Push Hook" / "Merge Request Hook"; the delivery named by `Idempotency-Key` (the same on
every retry of one event) or `X-Gitlab-Event-UUID`. Statuses through
`POST /projects/:id/statuses/:sha` with a `PRIVATE-TOKEN`; issues through
`POST /projects/:id/issues` (title, description, labels as one comma-separated string)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from conveyor.forge import refs
from conveyor.forge.common import (
    created_issue,
    merge_request_event,
    pushed_branch,
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
    StatusState,
)
from conveyor.forge.payload import header, load_object, pick, pick_optional, urls
from conveyor.forge.signatures import check_token

TOKEN = "x-gitlab-token"  # noqa: S105 (a header name)
EVENT = "x-gitlab-event"
DELIVERIES = ("idempotency-key", "x-gitlab-event-uuid", "webhook-id")
PUSH_HOOK = "Push Hook"
MERGE_REQUEST_HOOK = "Merge Request Hook"
RUN_ACTIONS = frozenset({"open", "reopen", "update"})  # update: only with new commits
_STATES = {
    StatusState.PENDING: "pending",
    StatusState.RUNNING: "running",
    StatusState.SUCCESS: "success",
    StatusState.FAILURE: "failed",
    StatusState.ERROR: "canceled",
}


class GitLab:
    name = "gitlab"
    default_api_url: str | None = "https://gitlab.com/api/v4"

    def verify(self, headers: Headers, body: bytes, secret: str, now: float) -> None:
        verify_signed(
            headers,
            body,
            secret,
            now,
            native=header(headers, TOKEN),
            check_native=lambda sent: check_token(sent, secret),
            unsigned="no X-Gitlab-Token or webhook-signature header",
        )

    def delivery_id(self, headers: Headers) -> str | None:
        return header(headers, *DELIVERIES)

    def parse(self, headers: Headers, body: bytes) -> ForgeEvent | Ignored:
        event = header(headers, EVENT)
        if event is None:
            raise Malformed(f"no {EVENT} header")
        delivery = self.delivery_id(headers) or ""
        if event == PUSH_HOOK:
            return _push(delivery, load_object(body))
        if event == MERGE_REQUEST_HOOK:
            return _merge_request(delivery, load_object(body))
        return Ignored(f"{event} events start no run", delivery, event)

    def merge_request_ref(self, number: int) -> str:
        return f"refs/merge-requests/{number}/head"

    def status_request(self, api_url: str, token: str, status: CommitStatus) -> StatusRequest:
        project = quote(status.repository, safe="")  # the URL-encoded path is an :id
        body: dict[str, Any] = {
            "state": _STATES[status.state],
            "name": status.context,
            "target_url": status.target_url,
            "description": status.description,
        }
        if status.ref is not None:
            body["ref"] = status.ref
        return StatusRequest(
            method="POST",
            url=f"{api_url.rstrip('/')}/projects/{project}/statuses/{status.sha}",
            headers={"PRIVATE-TOKEN": token, "Accept": "application/json"},
            json=body,
        )

    def issue_request(self, api_url: str, token: str, issue: NewIssue) -> StatusRequest:
        project = quote(issue.repository, safe="")
        body: dict[str, Any] = {"title": issue.title, "description": issue.body}
        if issue.labels:
            body["labels"] = ",".join(issue.labels)
        return StatusRequest(
            method="POST",
            url=f"{api_url.rstrip('/')}/projects/{project}/issues",
            headers={"PRIVATE-TOKEN": token, "Accept": "application/json"},
            json=body,
        )

    def created_issue(self, answer: Any) -> CreatedIssue:
        return created_issue(answer, "iid", "web_url")


def _push(delivery: str, data: Mapping[str, Any]) -> ForgeEvent | Ignored:
    ref = pick(data, "ref", str)
    after = pick(data, "after", str)
    branch = pushed_branch(ref, after, False, delivery, PUSH_HOOK)
    if isinstance(branch, Ignored):
        return branch
    sha = pick_optional(data, "checkout_sha", str) or after
    return ForgeEvent(
        forge="gitlab",
        kind=EventKind.PUSH,
        delivery_id=delivery,
        repository=pick(data, "project.path_with_namespace", str),
        clone_urls=_project_urls(data, "project"),
        ref=ref,
        branch=branch,
        commit_sha=refs.check_sha(sha),
        sender=pick_optional(data, "user_username", str) or "unknown",
    )


def _merge_request(delivery: str, data: Mapping[str, Any]) -> ForgeEvent | Ignored:
    attributes = "object_attributes"
    number = pick(data, f"{attributes}.iid", int)
    action = pick_optional(data, f"{attributes}.action", str) or "open"
    new_commits = pick_optional(data, f"{attributes}.oldrev", str) is not None
    if action not in RUN_ACTIONS or (action == "update" and not new_commits):
        reason = f"merge request !{number} {action}: no new commits"
        return Ignored(reason, delivery, MERGE_REQUEST_HOOK)
    head = refs.check_sha(pick(data, f"{attributes}.last_commit.id", str), "last_commit.id")
    source = refs.check_branch(pick(data, f"{attributes}.source_branch", str))
    request = MergeRequest(
        number=number,
        head_sha=head,
        source_branch=source,
        target_branch=refs.check_branch(pick(data, f"{attributes}.target_branch", str)),
        action=action,
    )
    return merge_request_event(
        "gitlab",
        delivery,
        request,
        repository=pick(data, "project.path_with_namespace", str),
        clone_urls=_project_urls(data, "project"),
        ref=f"refs/merge-requests/{number}/head",
        sender=pick_optional(data, "user.username", str) or "unknown",
    )


def _project_urls(data: Mapping[str, Any], where: str) -> tuple[str, ...]:
    names = ("git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url")
    return urls(data, *(f"{where}.{name}" for name in names))


def from_site(_kind: str) -> GitLab:
    return GitLab()
