"""What every forge module provides (the `Forge` Protocol) and the values it trades in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

# Header names are compared in lower case (HTTP headers are case-insensitive).
Headers = Mapping[str, str]


class DeliveryRefused(Exception):
    """A delivery that is not accepted; `status` is the HTTP answer (401, 400)."""

    status: int = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unverified(DeliveryRefused):
    """Unsigned, wrongly signed or stale: nothing of it is read."""

    status = 401


class Malformed(DeliveryRefused):
    """Signed, but not a payload the forge documents."""

    status = 400


class EventKind(StrEnum):
    PUSH = "push"
    MERGE_REQUEST = "merge_request"  # a GitHub/Gitea pull request, a GitLab merge request


class StatusState(StrEnum):
    """Conveyor's states of a commit status; each forge maps them to its own words."""

    PENDING = "pending"  # queued
    RUNNING = "running"  # a job started
    SUCCESS = "success"
    FAILURE = "failure"  # the pipeline failed
    ERROR = "error"  # it could not run (interrupted, cancelled, infrastructure)


@dataclass(frozen=True)
class MergeRequest:
    number: int  # GitHub's/Gitea's pull request number, GitLab's iid
    head_sha: str
    source_branch: str
    target_branch: str
    action: str  # as the forge said it: opened, synchronize, update...


@dataclass(frozen=True)
class ForgeEvent:
    """A push or a merge request, as any forge describes it."""

    forge: str
    kind: EventKind
    delivery_id: str
    repository: str  # the full name on the forge: owner/name, group/subgroup/project
    clone_urls: tuple[str, ...]  # every URL the payload gives for the repository
    ref: str  # the ref on the forge holding the commit: refs/heads/x, refs/pull/3/head
    branch: str  # the pushed branch; a merge request's source branch
    commit_sha: str  # what runs: the pushed commit, or the merge request's head
    sender: str
    merge_request: MergeRequest | None = None


@dataclass(frozen=True)
class Ignored:
    """A verified delivery that asks for no run, and why (a ping, a tag, a deletion)."""

    reason: str
    delivery_id: str
    event: str


@dataclass(frozen=True)
class CommitStatus:
    repository: str  # full name on the forge
    sha: str
    state: StatusState
    context: str  # one per pipeline: conveyor/<pipeline>
    target_url: str
    description: str
    ref: str | None = None  # GitLab takes the branch; the others ignore it


@dataclass(frozen=True)
class StatusRequest:
    """One HTTP request that sets a commit status, exactly as the forge documents it."""

    method: str
    url: str
    headers: dict[str, str]
    json: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewIssue:
    """An issue to open on the project's repository (a requirement Conveyor files)."""

    repository: str  # full name on the forge
    title: str
    body: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreatedIssue:
    number: int  # GitHub's/Gitea's issue number, GitLab's iid: what `#N` names
    url: str  # its page on the forge


class Forge(Protocol):
    name: str
    default_api_url: str | None  # None: derived from the clone URL (self-hosted forges)

    def verify(self, headers: Headers, body: bytes, secret: str, now: float) -> None:
        """Raise `Unverified` unless the delivery is signed with `secret`."""
        ...

    def delivery_id(self, headers: Headers) -> str | None: ...

    def parse(self, headers: Headers, body: bytes) -> ForgeEvent | Ignored:
        """The event of a verified delivery; `Malformed` when it is not one."""
        ...

    def merge_request_ref(self, number: int) -> str:
        """The ref under which the forge keeps a merge request's head."""
        ...

    def status_request(self, api_url: str, token: str, status: CommitStatus) -> StatusRequest: ...

    def issue_request(self, api_url: str, token: str, issue: NewIssue) -> StatusRequest:
        """The request that opens `issue`, exactly as the forge documents it."""
        ...

    def created_issue(self, answer: Any) -> CreatedIssue:
        """The issue a successful answer describes; `Malformed` when it is not one."""
        ...
