"""Frozen records the store takes and returns; callers never see SQLAlchemy rows."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from conveyor.states import FailureClass, JobState, RunState


@dataclass(frozen=True)
class NewRun:
    """What is known about a run when it starts."""

    pipeline: str
    commit_sha: str | None = None
    branch: str | None = None
    tag: str | None = None
    author: str | None = None
    message: str | None = None
    committed_at: float | None = None
    actor: str | None = None
    trigger: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"rerun_of": 3}
    parallelism: int | None = None
    workspace: str | None = None


@dataclass(frozen=True)
class NewJob:
    """One planned job of a run, in the order the planner lists them."""

    job_id: str
    name: str
    needs: Sequence[str] = ()
    matrix: Mapping[str, Any] = field(default_factory=dict)
    plan_status: str | None = None
    reason: str | None = None
    state: JobState = JobState.PENDING


@dataclass(frozen=True)
class JobStateChange:
    """A job's new state, as `Store.set_job_state` takes it, stamped when it happened."""

    run_id: int
    job_id: str
    state: JobState
    fields: Mapping[str, Any]
    now: float
    actor: str | None = None


@dataclass(frozen=True)
class RunRecord:
    id: int
    pipeline: str
    state: RunState
    commit_sha: str | None
    branch: str | None
    tag: str | None
    author: str | None
    message: str | None
    committed_at: float | None
    actor: str | None
    trigger: Mapping[str, Any]
    parallelism: int | None
    started_at: float
    finished_at: float | None
    pid: int | None
    host: str | None
    workspace: str | None


@dataclass(frozen=True)
class JobRecord:
    run_id: int
    job_id: str
    ordinal: int
    name: str
    matrix: Mapping[str, Any]
    state: JobState
    plan_status: str | None
    reason: str | None
    needs: tuple[str, ...]
    attempts: int
    exit_code: int | None
    failure: FailureClass | None
    detail: str | None
    started_at: float | None
    finished_at: float | None
    cache_key: str | None
    log_blob: str | None
    outputs_blob: str | None


class EventKind(StrEnum):
    RUN_CREATED = "run.created"
    RUN_STATE = "run.state"
    JOB_PLANNED = "job.planned"
    JOB_STATE = "job.state"
    CACHE_PUT = "cache.put"
    LOCK_QUEUED = "lock.queued"
    LOCK_ACQUIRED = "lock.acquired"
    LOCK_RELEASED = "lock.released"
    LOCK_SUPERSEDED = "lock.superseded"
    REPORT_ADDED = "report.added"
    DEPLOY_STARTED = "deploy.started"
    DEPLOY_FINISHED = "deploy.finished"
    DEPLOY_RESUMED = "deploy.resumed"
    TRAFFIC_SHIFTED = "traffic.shifted"
    ROLLBACK = "rollback"
    RELEASE_STATE = "release.state"
    REPLICA_EVENT = "replica.event"
    SMOKE_RESULT = "smoke.result"
    RELEASE_STEP = "release.step"  # a progressive release moved to its next step
    RELEASE_DECISION = "release.decision"  # the judge's verdict with its evidence
    RELEASE_COMMAND = "release.command"  # promote, abort, pause, resume (from a person)
    RELEASE_HOOK = "release.hook"  # a release hook started, or ended (deploy/hooks.py)
    FLAG_CHANGED = "flag.changed"
    FLAG_KILLED = "flag.killed"  # a kill switch: counts as a rollback
    APPROVAL_REQUESTED = "approval.requested"  # a deploy waits for people (approvals/)
    APPROVAL_GRANTED = "approval.granted"
    APPROVAL_REJECTED = "approval.rejected"
    APPROVAL_REFUSED = "approval.refused"  # a decision not accepted, with the reason
    APPROVAL_EXPIRED = "approval.expired"  # the timeout passed: counts as a rejection
    BASELINE_ACCEPTED = "baseline.accepted"  # findings accepted as existing (findings/accepted)
    RUN_QUEUED = "run.queued"  # the server queued a run (server/queue.py)
    RUN_DEQUEUED = "run.dequeued"  # a queued run started, or was cancelled before it did
    WEBHOOK_DELIVERY = "webhook.delivery"  # a forge delivery and what became of it
    FORGE_STATUS = "forge.status"  # a commit status sent to a forge, or given up
    AUTH_DENIED = "auth.denied"  # a caller refused (401/403) by the server
    FEEDBACK_RECEIVED = "feedback.received"  # user feedback ingested from a router
    ALERT_RECEIVED = "alert.received"  # an alert and its outcome (observe/alerts.py)
    INCIDENT_OPENED = "incident.opened"  # with its suspects (observe/incidents.py)
    INCIDENT_STATE = "incident.state"  # acknowledged, mitigated, resolved
    INCIDENT_NOTE = "incident.note"  # an alert joined it, or a person noted something


@dataclass(frozen=True)
class EventRecord:
    id: int
    ts: float
    kind: str  # an EventKind value
    run_id: int | None
    job_id: str | None
    state: str | None
    commit_sha: str | None
    actor: str | None
    data: Mapping[str, Any]


@dataclass(frozen=True)
class CacheEntry:
    key: str  # hex digest of the job's inputs
    pipeline: str
    job_id: str
    run_id: int | None
    outputs_manifest: str | None = None  # blob digest
    components: Mapping[str, Any] = field(default_factory=dict)  # named parts of the key
    created_at: float = field(default_factory=time.time)


class LockState(StrEnum):
    QUEUED = "queued"
    HOLDING = "holding"
    RELEASED = "released"
    SUPERSEDED = "superseded"  # a newer run queued on the same group took its place


@dataclass(frozen=True)
class LockTicket:
    id: int
    group: str
    run_id: int
    job_id: str
    state: LockState
    pid: int
    host: str
    created_at: float
    pid_started: int | None = None  # the owner's start time: a reused pid is not the owner
    # Tickets of other runs this enqueue superseded (only set by `Store.lock_enqueue`).
    superseded: tuple[LockTicket, ...] = ()


@dataclass(frozen=True)
class ReportRecord:
    """Evidence a job published: a blob digest, its kind and a small summary."""

    run_id: int
    job_id: str
    kind: str  # e.g. "sarif", "tests", "coverage", "gate"
    digest: str
    summary: Mapping[str, Any]
    created_at: float
