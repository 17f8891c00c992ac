"""What an environment's pages show over time, read from the store alone (no router or
runtime call, so a page is fast and works while the environment is stopped):

- `environment_summary`: each environment's live and warm releases and recorded weights;
- `signal_series`: each release's golden signals per window between stored samples;
- `deploy_timeline`: one deploy's steps, weights, the judge's verdicts and the commands
  people sent, in the order the controller recorded them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.deploy.model import SignalRates, SignalSample
from conveyor.deploy.progress import CanaryProgress, load_progress
from conveyor.deploy.sampler import from_row
from conveyor.deploy.signals import rates_series
from conveyor.errors import NotFoundError
from conveyor.service.environments import environments_of
from conveyor.service.project import Project
from conveyor.states import DeployState
from conveyor.store.ledger import DeployRecord
from conveyor.store.records import EventKind, EventRecord
from conveyor.store.store import Store

SERIES_SECONDS = 6 * 3600.0  # the charts of an environment's page: the last six hours
SERIES_POINTS = 240  # windows per release and chart: a page stays small at any sample rate


@dataclass(frozen=True)
class EnvironmentSummary:
    name: str
    runtime: str
    router: str
    approval: bool  # deploys wait for people
    live_release: str | None
    warm_release: str | None
    weights: dict[str, int]  # the recorded routes: release -> percent
    state: str  # never deployed, serving, deploying, stopped
    deploying: DeployRecord | None
    last_deploy: DeployRecord | None


def environment_summary(project: Project, store: Store) -> list[EnvironmentSummary]:
    """Every environment of conveyor.yml, as the ledger records it."""
    found = []
    for name, spec in environments_of(project).items():
        record = store.ledger.environments.get(name)
        deploys = store.ledger.deploys.of_environment(name)
        running = [d for d in deploys if d.state is DeployState.IN_PROGRESS]
        live_id = record.live_release if record else None
        live = store.ledger.releases.get(live_id, name) if live_id else None
        if record is None:
            state = "never deployed"
        elif running:
            state = "deploying"
        elif live is not None and live.state.value == "stopped":
            state = "stopped"
        else:
            state = "serving"
        found.append(
            EnvironmentSummary(
                name=name,
                runtime=spec.runtime,
                router=spec.router,
                approval=spec.approval is not None,
                live_release=record.live_release if record else None,
                warm_release=record.warm_release if record else None,
                weights=route_weights(record.routes) if record else {},
                state=state,
                deploying=running[-1] if running else None,
                last_deploy=deploys[-1] if deploys else None,
            )
        )
    return found


def route_weights(routes: Mapping[str, Any]) -> dict[str, int]:
    """release -> weight of a recorded route table (its JSON form)."""
    backends = routes.get("backends") or []
    return {str(b["release_id"]): int(b.get("weight", 0)) for b in backends if "release_id" in b}


def signal_series(
    store: Store, environment: str, since: float, points: int = SERIES_POINTS
) -> dict[str, list[SignalRates]]:
    """release -> its golden signals per window between stored samples: at most `points`
    windows, each spanning as many samples as needed (the counters are cumulative, so a
    wider window is the exact average over it, not a sample of it)."""
    by_release: dict[str, list[SignalSample]] = {}
    for row in store.ledger.samples.spread(environment, since, points + 1):
        by_release.setdefault(row.release_id, []).append(from_row(row))
    return {release: rates_series(samples) for release, samples in by_release.items()}


@dataclass(frozen=True)
class Step:
    index: int
    ts: float
    definition: dict[str, Any]


@dataclass(frozen=True)
class WeightChange:
    ts: float
    weights: dict[str, int]
    why: str


@dataclass(frozen=True)
class Verdict:
    ts: float
    verdict: str
    reason: str
    elapsed: float | None
    evidence: dict[str, Any]
    requests_needed: int | None


@dataclass(frozen=True)
class DeployTimeline:
    deploy: DeployRecord
    progress: CanaryProgress | None
    steps: list[Step] = field(default_factory=list)
    weights: list[WeightChange] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    commands: list[EventRecord] = field(default_factory=list)
    finished: EventRecord | None = None

    @property
    def decision(self) -> str | None:
        """The deploy's outcome in words, once it finished."""
        if self.deploy.state is DeployState.IN_PROGRESS:
            return None
        said = f": {self.deploy.reason}" if self.deploy.reason else ""
        return f"{self.deploy.state.value}{said}"


TIMELINE_EVENTS = (
    EventKind.RELEASE_STEP,
    EventKind.TRAFFIC_SHIFTED,
    EventKind.ROLLBACK,
    EventKind.RELEASE_DECISION,
    EventKind.RELEASE_COMMAND,
    EventKind.DEPLOY_FINISHED,
)


def deploy_timeline(store: Store, environment: str, deploy_id: int) -> DeployTimeline:
    """Deploy `deploy_id` of `environment` as its events tell it."""
    try:
        deploy = store.ledger.deploys.get(deploy_id)
    except NotFoundError:
        deploy = None
    if deploy is None or deploy.environment != environment:
        raise NotFoundError(f"no deploy {deploy_id} in {environment}")
    ours = store.ledger.history.events(environment, TIMELINE_EVENTS, deploy_id=deploy_id)
    return DeployTimeline(
        deploy=deploy,
        progress=load_progress(deploy.progress),
        steps=[_step(e) for e in _of(ours, EventKind.RELEASE_STEP)],
        weights=[_weights(e) for e in ours if e.data.get("weights") is not None],
        verdicts=[_verdict(e) for e in _of(ours, EventKind.RELEASE_DECISION)],
        commands=_of(ours, EventKind.RELEASE_COMMAND),
        finished=next(iter(_of(ours, EventKind.DEPLOY_FINISHED)), None),
    )


def _of(found: Sequence[EventRecord], kind: EventKind) -> list[EventRecord]:
    return [e for e in found if e.kind == kind.value]


def _step(event: EventRecord) -> Step:
    return Step(int(event.data.get("step", 0)), event.ts, dict(event.data.get("definition", {})))


def _weights(event: EventRecord) -> WeightChange:
    weights = {str(k): int(v) for k, v in dict(event.data.get("weights", {})).items()}
    return WeightChange(event.ts, weights, str(event.data.get("why", event.kind)))


def _verdict(event: EventRecord) -> Verdict:
    data = event.data
    elapsed = data.get("elapsed")
    needed = data.get("requests_needed")
    return Verdict(
        ts=event.ts,
        verdict=str(data.get("verdict", "")),
        reason=str(data.get("reason", "")),
        elapsed=float(elapsed) if elapsed is not None else None,
        evidence=dict(data.get("evidence") or {}),
        requests_needed=int(needed) if needed is not None else None,
    )
