"""What the forges do alike, written once: a delivery signed by the forge's own header
and/or a Standard Webhooks signature, a push that runs only when it moves a branch, a
merge request's event, and the commit statuses API that GitHub defined and Gitea and
Forgejo copied. What differs (header names, payload paths, state names) stays in each
forge's module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from conveyor.forge import refs
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
    Unverified,
)
from conveyor.forge.payload import pick
from conveyor.forge.signatures import check_standard, has_standard_signature

# GitHub's state names, which Gitea and Forgejo use too.
HUB_STATES = {
    StatusState.PENDING: "pending",
    StatusState.RUNNING: "pending",  # no running state
    StatusState.SUCCESS: "success",
    StatusState.FAILURE: "failure",
    StatusState.ERROR: "error",
}


def verify_signed(
    headers: Headers,
    body: bytes,
    secret: str,
    now: float,
    *,
    native: str | None,
    check_native: Callable[[str], None],
    unsigned: str,
) -> None:
    """`native` is the forge's own credential header as sent (None when not); either it or
    a Standard Webhooks signature must be there, and each sent must verify. `unsigned`
    says what was looked for, when neither came."""
    standard = has_standard_signature(headers)
    if native is None and not standard:
        raise Unverified(f"unsigned: {unsigned}")
    if native is not None:
        check_native(native)
    if standard:
        check_standard(headers, body, secret, now)


def pushed_branch(ref: str, after: str, deleted: bool, delivery: str, event: str) -> str | Ignored:
    """The branch a push moved, or why it starts no run (deleted, or not a branch)."""
    if deleted or refs.is_zero(after):
        return Ignored(f"{ref} was deleted", delivery, event)
    branch = refs.branch_of(ref)
    if branch is None:
        return Ignored(f"{ref} is not a branch: only branch pushes run", delivery, event)
    return branch


def merge_request_event(
    forge: str,
    delivery: str,
    request: MergeRequest,
    *,
    repository: str,
    clone_urls: tuple[str, ...],
    ref: str,
    sender: str,
) -> ForgeEvent:
    """A merge request runs its source branch at its head commit, fetched by `ref`."""
    return ForgeEvent(
        forge=forge,
        kind=EventKind.MERGE_REQUEST,
        delivery_id=delivery,
        repository=repository,
        clone_urls=clone_urls,
        ref=ref,
        branch=request.source_branch,
        commit_sha=request.head_sha,
        sender=sender,
        merge_request=request,
    )


def repos_status_request(
    api_url: str, status: CommitStatus, headers: Mapping[str, str], description: str
) -> StatusRequest:
    """`POST /repos/{owner}/{repo}/statuses/{sha}`, as GitHub, Gitea and Forgejo take it."""
    return StatusRequest(
        method="POST",
        url=f"{api_url.rstrip('/')}/repos/{status.repository}/statuses/{status.sha}",
        headers=dict(headers),
        json={
            "state": HUB_STATES[status.state],
            "target_url": status.target_url,
            "description": description,
            "context": status.context,
        },
    )


def repos_issue_request(
    api_url: str, issue: NewIssue, headers: Mapping[str, str], body: dict[str, Any]
) -> StatusRequest:
    """`POST /repos/{owner}/{repo}/issues`, as GitHub, Gitea and Forgejo take it."""
    return StatusRequest(
        method="POST",
        url=f"{api_url.rstrip('/')}/repos/{issue.repository}/issues",
        headers=dict(headers),
        json=body,
    )


def created_issue(answer: Any, number_field: str, url_field: str) -> CreatedIssue:
    """The created issue's number and page from the forge's answer (an issue object)."""
    if not isinstance(answer, Mapping):
        raise Malformed("the answer is not a JSON object")
    number = pick(answer, number_field, int)
    if number < 1:
        raise Malformed(f"{number_field} is not an issue number")
    return CreatedIssue(number=number, url=pick(answer, url_field, str))
