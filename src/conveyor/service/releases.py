"""Progressive releases under the CLI: where a release stands, and a person's commands.

A command (promote, abort, pause, resume) is an event for the deploy in progress; the
controller running that deploy reads it at its next interval. Nothing here waits for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.deploy.model import SignalSample
from conveyor.deploy.progress import CanaryProgress, load_progress
from conveyor.deploy.sampler import from_row
from conveyor.deploy.signals import overall_rates
from conveyor.errors import ConveyorError
from conveyor.service.environments import environment_spec
from conveyor.service.project import Project
from conveyor.spec.strategy import Analysis, Canary, merged
from conveyor.states import DeployState
from conveyor.store.ledger import DeployRecord
from conveyor.store.records import EventKind
from conveyor.store.store import Store

if TYPE_CHECKING:  # the judge and its simulation load only for `explain`
    from conveyor.analysis.capability import Capability

COMMANDS = ("promote", "abort", "pause", "resume")


@dataclass(frozen=True)
class ReleaseStatus:
    environment: str
    deploy: DeployRecord | None  # the deploy in progress, else the latest one
    in_progress: bool
    progress: CanaryProgress | None  # None: the deploy recorded none (not progressive)
    decisions: list[dict[str, Any]]  # the judge's recorded verdicts, newest last
    # Each release hook of the deploy as it last stood (running, or its result), in order.
    hooks: list[dict[str, Any]] = field(default_factory=list)


def release_status(project: Project, store: Store, name: str, last: int = 10) -> ReleaseStatus:
    environment_spec(project, name)
    deploys = store.ledger.deploys.of_environment(name)
    running = [d for d in deploys if d.state is DeployState.IN_PROGRESS]
    deploy = running[-1] if running else (deploys[-1] if deploys else None)
    decisions: list[dict[str, Any]] = []
    if deploy is not None:
        events = store.ledger.history.events(
            name, (EventKind.RELEASE_DECISION,), deploy_id=deploy.id
        )
        decisions = [{"ts": e.ts, **e.data} for e in events][-last:]
    return ReleaseStatus(
        environment=name,
        deploy=deploy,
        in_progress=bool(running),
        progress=load_progress(deploy.progress) if deploy else None,
        decisions=decisions,
        hooks=hook_runs(store, name, deploy.id) if deploy else [],
    )


def hook_runs(store: Store, name: str, deploy_id: int) -> list[dict[str, Any]]:
    """The release hooks of a deploy from its `release.hook` events: the last word on each
    (a finished run replaces its start), in the order they started."""
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for event in store.ledger.history.events(name, (EventKind.RELEASE_HOOK,), deploy_id=deploy_id):
        key = (str(event.data.get("phase")), int(event.data.get("index", -1)))
        runs[key] = {"ts": event.ts, **event.data}
    return list(runs.values())


def send_command(project: Project, store: Store, name: str, command: str, actor: str) -> int:
    """Queue `command` for the deploy in progress in `name`; returns that deploy's id."""
    if command not in COMMANDS:
        raise ConveyorError(f"unknown command {command!r}", hint=", ".join(COMMANDS))
    environment_spec(project, name)
    running = store.ledger.deploys.of_environment(name, DeployState.IN_PROGRESS)
    if not running:
        raise ConveyorError(
            f"no release in progress in {name}",
            hint=f"`conveyor env history {name}` lists what happened; "
            f"`conveyor rollback {name}` switches back after a release",
        )
    deploy = running[-1]
    store.ledger.deploys.add_command(name, deploy.id, command, actor)
    return deploy.id


RECENT_SECONDS = 900.0  # the traffic `explain` reads: the last 15 minutes of samples
ASSUMED_ERROR_RATE = 0.001  # with no samples to read it from
EXPLAIN_RUNS = 10  # simulated canaries per question


@dataclass(frozen=True)
class Explanation:
    """What the environment's canary analysis can detect at its traffic, and how soon."""

    environment: str
    source: str  # where the traffic figures come from
    settings: Analysis  # the first analysis step's, merged with the canary's
    capability: Capability


def explain_release(
    project: Project,
    store: Store,
    name: str,
    *,
    rate: float | None = None,
    error_rate: float | None = None,
    runs: int = EXPLAIN_RUNS,
    now: float | None = None,
) -> Explanation:
    """The judge of `name`'s first analysis step, run on simulated traffic like its own
    (its samples of the last 15 minutes), or at `rate` requests per second (what if)."""
    from conveyor.analysis.capability import Traffic, capability

    spec = environment_spec(project, name)
    if spec.strategy is None:
        raise ConveyorError(
            f"{name} has no progressive strategy: its deploys are not judged",
            hint="docs/environments.md shows a canary strategy",
        )
    weight, settings = _first_analysis(spec.strategy.as_canary())
    if settings is None:
        raise ConveyorError(
            f"{name}'s strategy has no analysis step: only its guardrails watch a release",
            hint="add `- analysis: {}` after a `weight` step of the canary",
        )
    if rate is not None and not 0 < rate <= 1e6:
        raise ConveyorError(f"--rate must be a positive number of requests per second: {rate}")
    if error_rate is not None and not 0 <= error_rate < 1:
        raise ConveyorError(f"--error-rate must be a fraction in [0, 1): {error_rate}")
    seen = _recent_traffic(store, name, time.time() if now is None else now)
    if rate is None and seen is None:
        raise ConveyorError(
            f"no traffic recorded in {name} over the last 15 minutes",
            hint=f"`conveyor release explain {name} --rate 20` asks what 20 req/s would allow",
        )
    measured_rate, measured_errors = seen or (0.0, None)
    source = "samples of the last 15 minutes" if rate is None else "--rate"
    if error_rate is None and measured_errors is None:
        source += f"; error rate assumed {ASSUMED_ERROR_RATE:.2%}"
    baseline = weight if spec.strategy.as_canary().baseline else 0
    traffic = Traffic(
        rate=rate if rate is not None else measured_rate,
        error_rate=error_rate
        if error_rate is not None
        else (measured_errors or ASSUMED_ERROR_RATE),
        canary_share=weight / 100.0,
        baseline_share=min(baseline, 100 - weight) / 100.0,
    )
    return Explanation(name, source, settings, capability(settings, traffic, runs=runs))


def _first_analysis(canary: Canary) -> tuple[int, Analysis | None]:
    """The canary's weight at its first analysis step, and that step's settings."""
    weight = 0
    for step in canary.steps:
        if step.weight is not None:
            weight = step.weight
        if step.analysis is not None and 0 < weight < 100:
            return weight, merged(canary.analysis, step.analysis)
    return weight, None


def _recent_traffic(store: Store, name: str, now: float) -> tuple[float, float | None] | None:
    """Requests per second over all releases, and the share of 5xx, from the samples."""
    rows = store.ledger.samples.of(name, since=now - RECENT_SECONDS)
    by_release: dict[str, list[SignalSample]] = {}
    for row in rows:
        by_release.setdefault(row.release_id, []).append(from_row(row))
    found = [r for r in (overall_rates(s) for s in by_release.values()) if r is not None]
    requests = sum(r.requests for r in found)
    if not found or requests == 0:
        return None
    per_second = sum(r.requests_per_second for r in found)
    errors = sum(r.rate_5xx * r.requests for r in found)
    return per_second, errors / requests
