"""A forge's webhook delivery, from its bytes to a queued run (or a recorded refusal).

Order matters: the signature is checked before a byte of the payload is read; then the
delivery id (a replay is dropped), the payload, whose repository and branch it names,
and only then is anything fetched: the commit comes from the configured clone URL into
the server's bare mirror, and the run is queued for exactly that commit and branch.
Every delivery, whatever became of it, is recorded (`store/webhooks.py`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.forge.model import (
    DeliveryRefused,
    EventKind,
    ForgeEvent,
    Headers,
    Ignored,
    Malformed,
    Unverified,
)
from conveyor.forge.registry import FORGES
from conveyor.forge.settings import SECRET_VARIABLE, ForgeSettings, forge_settings
from conveyor.service.project import Project
from conveyor.spec.loader import load_pipeline
from conveyor.steps.registry import STEP_PARAMS
from conveyor.store.queue import NewQueued, enqueue
from conveyor.store.store import Store
from conveyor.store.webhooks import (
    DeliveryOutcome,
    NewDelivery,
    handled_before,
    queued_before,
    record_delivery,
)
from conveyor.vcs.mirror import FetchFailed, fetch_commit

MIRROR = "forge/mirror.git"  # in the state folder
MAX_RECORDED = 200  # characters of an unverified header kept in the record
# Gitea and Forgejo send the same deliveries: either path takes either's.
FAMILIES = {"forgejo": "gitea"}


@dataclass(frozen=True)
class DeliveryResult:
    outcome: DeliveryOutcome
    status_code: int
    reason: str
    delivery_id: str | None = None
    event: str | None = None
    queue_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "delivery": self.delivery_id,
            "queue_id": self.queue_id,
        }


@dataclass(frozen=True)
class ProjectForge:
    settings: ForgeSettings
    pipeline: str  # the pipeline's name: statuses are named after it


class WebhookReceiver:
    """One per server: handles verified deliveries one at a time, so a delivery sent
    twice at once is still queued once and the mirror sees one fetch at a time."""

    def __init__(
        self, project: Project, store: Store, environ: Mapping[str, str] = os.environ
    ) -> None:
        self.project = project
        self.store = store
        self.environ = environ
        self.mirror = project.state_dir / MIRROR
        self._lock = threading.Lock()
        self._cached: tuple[float, ProjectForge | None] | None = None

    def project_forge(self) -> ProjectForge | None:
        """The `forge:` section and secrets, read again when conveyor.yml changes."""
        try:
            mtime = self.project.spec_path.stat().st_mtime
        except FileNotFoundError:
            return None
        if self._cached is None or self._cached[0] != mtime:
            self._cached = (mtime, load_project_forge(self.project, self.environ))
        return self._cached[1]

    def receive(self, forge_name: str, headers: Headers, body: bytes) -> DeliveryResult:
        try:
            result = self._receive(forge_name, headers, body)
        except ConveyorError as error:  # conveyor.yml unreadable, git missing: ours to fix
            result = DeliveryResult(DeliveryOutcome.FAILED, 500, error.message)
            result = _with_sent_id(result, forge_name, headers)
        except DeliveryRefused as refused:
            outcome = (
                DeliveryOutcome.UNAUTHORIZED
                if isinstance(refused, Unverified)
                else DeliveryOutcome.MALFORMED
            )
            result = DeliveryResult(outcome, refused.status, refused.reason)
            result = _with_sent_id(result, forge_name, headers)
        self.record(forge_name, result)
        return result

    def refuse(
        self, forge_name: str, headers: Headers, outcome: DeliveryOutcome, status: int, reason: str
    ) -> DeliveryResult:
        """Record a delivery refused before it could be read (too large)."""
        result = _with_sent_id(DeliveryResult(outcome, status, reason), forge_name, headers)
        self.record(forge_name, result)
        return result

    def record(self, forge_name: str, result: DeliveryResult) -> None:
        record_delivery(
            self.store.engine,
            NewDelivery(
                forge=forge_name,
                delivery_id=result.delivery_id,
                event=result.event,
                outcome=result.outcome,
                status_code=result.status_code,
                reason=result.reason,
                queue_id=result.queue_id,
            ),
        )

    def _receive(self, forge_name: str, headers: Headers, body: bytes) -> DeliveryResult:
        project_forge = self.project_forge()
        if project_forge is None:
            raise Unverified("this project has no forge: section in conveyor.yml")
        settings = project_forge.settings
        kind = settings.config.kind
        if not same_forge(kind, forge_name):
            raise Unverified(f"this project's forge is {kind}, not {forge_name}")
        if not settings.secret:
            raise Unverified(f"no webhook secret: set {SECRET_VARIABLE} or the state's forge.env")
        forge = settings.forge
        forge.verify(headers, body, settings.secret, time.time())
        delivery_id = forge.delivery_id(headers)
        if not delivery_id or len(delivery_id) > MAX_RECORDED:
            raise Malformed("no delivery id: a replay could not be told from a new delivery")
        with self._lock:
            return self._verified(settings, delivery_id, forge.parse(headers, body))

    def _verified(
        self, settings: ForgeSettings, delivery_id: str, parsed: ForgeEvent | Ignored
    ) -> DeliveryResult:
        earlier = handled_before(self.store.engine, settings.forge.name, delivery_id)
        if earlier is not None:
            reason = f"duplicate: delivery {delivery_id} was handled at record {earlier.id}"
            return DeliveryResult(DeliveryOutcome.DUPLICATE, 200, reason, delivery_id)
        if isinstance(parsed, Ignored):
            return DeliveryResult(
                DeliveryOutcome.IGNORED, 202, parsed.reason, delivery_id, parsed.event
            )
        event = parsed
        ignored = _ignored_reason(settings, event)
        if ignored is not None:
            return DeliveryResult(
                DeliveryOutcome.IGNORED, 202, ignored, delivery_id, event.kind.value
            )
        trigger = trigger_of(event)
        again = queued_before(self.store.engine, event.commit_sha, event.branch, trigger)
        if again is not None:
            reason = f"duplicate: this {event.kind.value} was queued already (queue {again})"
            return DeliveryResult(
                DeliveryOutcome.DUPLICATE, 200, reason, delivery_id, event.kind.value, again
            )
        return self._queue(settings, event, trigger)

    def _queue(
        self, settings: ForgeSettings, event: ForgeEvent, trigger: dict[str, Any]
    ) -> DeliveryResult:
        try:
            fetch_commit(self.mirror, settings.config.clone_url, event.ref, event.commit_sha)
        except FetchFailed as failed:
            return DeliveryResult(
                DeliveryOutcome.FAILED, 502, failed.message, event.delivery_id, event.kind.value
            )
        queue_id = enqueue(
            self.store.engine,
            NewQueued(
                repository=os.fspath(self.mirror),
                commit_sha=event.commit_sha,
                branch=event.branch,
                trigger=trigger,
                actor=event.sender,
                options={},
            ),
        )
        reason = f"queued {event.commit_sha[:12]} on {event.branch}"
        return DeliveryResult(
            DeliveryOutcome.QUEUED, 202, reason, event.delivery_id, event.kind.value, queue_id
        )


def same_forge(one: str, other: str) -> bool:
    """Whether two forge names send the same deliveries (gitea and forgejo do)."""
    return FAMILIES.get(one, one) == FAMILIES.get(other, other)


def load_project_forge(project: Project, environ: Mapping[str, str]) -> ProjectForge | None:
    pipeline = load_pipeline(project.spec_path, steps=STEP_PARAMS).pipeline
    if pipeline.forge is None:
        return None
    settings = forge_settings(pipeline.forge, project.state_dir, environ)
    return ProjectForge(settings, pipeline.name or project.directory.name)


def trigger_of(event: ForgeEvent) -> dict[str, Any]:
    """What the queue entry (and the run) says started it; statuses are sent from it."""
    trigger: dict[str, Any] = {
        "kind": event.kind.value,
        "forge": event.forge,
        "delivery": event.delivery_id,
        "repository": event.repository,
        "ref": event.ref,
        "sender": event.sender,
    }
    request = event.merge_request
    if request is not None:
        trigger |= {
            "merge_request": request.number,
            "head_sha": request.head_sha,
            "source_branch": request.source_branch,
            "target_branch": request.target_branch,
            "action": request.action,
        }
    return trigger


def _ignored_reason(settings: ForgeSettings, event: ForgeEvent) -> str | None:
    if not settings.owns(event.repository, event.clone_urls):
        return (
            f"unknown repository {event.repository}: this project is {settings.config.repository}"
        )
    branch = event.branch
    if event.kind is EventKind.MERGE_REQUEST and event.merge_request is not None:
        branch = event.merge_request.target_branch
    if not settings.builds_branch(branch):
        return f"branch {branch} is not in forge.branches {settings.config.branches}"
    return None


def _with_sent_id(result: DeliveryResult, forge_name: str, headers: Headers) -> DeliveryResult:
    """The delivery id as sent (unverified, cut short), to find the record again."""
    try:
        sent = FORGES.create(forge_name, forge_name).delivery_id(headers)
    except ConveyorError:
        sent = None
    return DeliveryResult(
        result.outcome, result.status_code, result.reason, (sent or "")[:MAX_RECORDED] or None
    )


def mirror_path(state_dir: Path) -> Path:
    return state_dir / MIRROR
