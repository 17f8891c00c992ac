"""Gitea and Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature` (the hex HMAC-SHA256 of
the body), `X-Gitea-Event` / `X-Forgejo-Event` push / pull_request, `X-Gitea-Delivery` /
`X-Forgejo-Delivery`; payloads shaped as GitHub's. Statuses through
`POST /repos/{owner}/{repo}/statuses/{sha}` with `Authorization: token ...`; issues through
`POST /repos/{owner}/{repo}/issues` (title, body; Gitea's `labels` are label ids, which a
name does not give, so the names are written in the body instead)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from conveyor.forge.common import created_issue, repos_issue_request, repos_status_request
from conveyor.forge.github import parse_hub_event, verify_hub_signature
from conveyor.forge.model import (
    CommitStatus,
    CreatedIssue,
    ForgeEvent,
    Headers,
    Ignored,
    Malformed,
    NewIssue,
    StatusRequest,
)
from conveyor.forge.payload import header

SIGNATURES = ("x-forgejo-signature", "x-gitea-signature")
EVENTS = ("x-forgejo-event", "x-gitea-event")
DELIVERIES = ("x-forgejo-delivery", "x-gitea-delivery")
RUN_ACTIONS = frozenset({"opened", "synchronized", "reopened"})


class Gitea:
    default_api_url: str | None = None  # self-hosted: <scheme>://<host>/api/v1

    def __init__(self, name: str = "gitea") -> None:
        self.name = name

    def verify(self, headers: Headers, body: bytes, secret: str, now: float) -> None:
        verify_hub_signature(headers, body, secret, now, *SIGNATURES, prefix="")

    def delivery_id(self, headers: Headers) -> str | None:
        return header(headers, *DELIVERIES, "webhook-id")

    def parse(self, headers: Headers, body: bytes) -> ForgeEvent | Ignored:
        event = header(headers, *EVENTS)
        if event is None:
            raise Malformed("no X-Gitea-Event or X-Forgejo-Event header")
        delivery = self.delivery_id(headers) or ""
        if event == "delete":
            return Ignored("a branch or tag was deleted", delivery, event)
        return parse_hub_event(self.name, event, delivery, body, RUN_ACTIONS)

    def merge_request_ref(self, number: int) -> str:
        return f"refs/pull/{number}/head"

    def status_request(self, api_url: str, token: str, status: CommitStatus) -> StatusRequest:
        headers = {"Authorization": f"token {token}", "Accept": "application/json"}
        return repos_status_request(api_url, status, headers, status.description)

    def issue_request(self, api_url: str, token: str, issue: NewIssue) -> StatusRequest:
        headers = {"Authorization": f"token {token}", "Accept": "application/json"}
        body = issue.body
        if issue.labels:
            body = f"{body}\n\nLabels: {', '.join(issue.labels)}"
        return repos_issue_request(api_url, issue, headers, {"title": issue.title, "body": body})

    def created_issue(self, answer: Any) -> CreatedIssue:
        return created_issue(answer, "number", "html_url")


def api_url_from_clone_url(clone_url: str) -> str | None:
    """`https://git.example.org/acme/shop.git` -> `https://git.example.org/api/v1`."""
    parts = urlsplit(clone_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/api/v1"


def from_site(kind: str) -> Gitea:
    return Gitea(kind)
