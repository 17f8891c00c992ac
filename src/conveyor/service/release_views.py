"""Releases for pages and the API: one deploy as it went (a canary's steps and weights,
the judge's evidence over time, its decision), and an environment's golden signals over
time for charts. Read from the store only: no router or runtime is asked."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from conveyor.deploy.model import SignalRates, SignalSample
from conveyor.deploy.progress import CanaryProgress, load_progress
from conveyor.deploy.sampler import stored_samples
from conveyor.deploy.signals import window_rates
from conveyor.errors import NotFoundError
from conveyor.service.environments import environment_spec
from conveyor.service.project import Project
from conveyor.service.releases import hook_runs
from conveyor.states import DeployState
from conveyor.store.ledger import DeployRecord
from conveyor.store.records import EventKind
from conveyor.store.store import Store

# What a deploy's timeline shows, in the order they happened.
TIMELINE_EVENTS = (
    EventKind.DEPLOY_STARTED,
    EventKind.RELEASE_STEP,
    EventKind.TRAFFIC_SHIFTED,
    EventKind.RELEASE_DECISION,
    EventKind.RELEASE_COMMAND,
    EventKind.ROLLBACK,
    EventKind.DEPLOY_FINISHED,
)
SIGNALS_WINDOW = 3600.0  # seconds of samples when the caller names no start


@dataclass(frozen=True)
class ReleaseDetail:
    """`conveyor release status -o json`'s shape, for any deploy, with its timeline."""

    environment: str
    deploy: DeployRecord
    in_progress: bool
    progress: CanaryProgress | None
    decisions: list[dict[str, Any]]  # the judge's verdicts with their evidence, oldest first
    hooks: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SignalPoint:
    """A release's golden signals between two of its samples (a chart's point)."""

    ts: float
    release_id: str
    weight: int
    rates: SignalRates


def deploy_of(store: Store, environment: str, deploy_id: int) -> DeployRecord:
    try:
        deploy: DeployRecord | None = store.ledger.deploys.get(deploy_id)
    except NotFoundError:
        deploy = None
    if deploy is None or deploy.environment != environment:
        raise NotFoundError(
            f"no deploy #{deploy_id} in {environment}",
            hint=f"`conveyor env history {environment}` lists its deploys",
        )
    return deploy


def release_detail(
    project: Project, store: Store, environment: str, deploy_id: int
) -> ReleaseDetail:
    environment_spec(project, environment)
    deploy = deploy_of(store, environment, deploy_id)
    timeline = [
        {"ts": event.ts, "kind": event.kind, "actor": event.actor, **dict(event.data)}
        for event in store.ledger.history.events(environment, TIMELINE_EVENTS, deploy_id=deploy_id)
    ]
    decisions = [e for e in timeline if e["kind"] == EventKind.RELEASE_DECISION.value]
    return ReleaseDetail(
        environment=environment,
        deploy=deploy,
        in_progress=deploy.state is DeployState.IN_PROGRESS,
        progress=load_progress(deploy.progress),
        decisions=decisions,
        hooks=hook_runs(store, environment, deploy_id),
        timeline=timeline,
    )


def signal_points(
    project: Project, store: Store, environment: str, since: float | None, now: float
) -> list[SignalPoint]:
    """Each release's rates between consecutive stored samples since `since`, by time."""
    environment_spec(project, environment)
    start = now - SIGNALS_WINDOW if since is None else since
    by_release: dict[str, list[SignalSample]] = {}
    for sample in stored_samples(store.ledger, environment, since=start):
        by_release.setdefault(sample.release_id, []).append(sample)
    points = [
        SignalPoint(newer.ts, newer.release_id, newer.weight, window_rates(older, newer))
        for samples in by_release.values()
        for older, newer in itertools.pairwise(samples)
    ]
    return sorted(points, key=lambda point: (point.ts, point.release_id))
