"""One rollout of a release to an environment: what a strategy works with, and returns.

    Target           what the controller of one environment works with (runtime, router,
                     ledger, settings)
    TargetActions    what is done to the environment whatever the deploy: drain and stop
                     a release, start a recorded one, sample the golden signals
    RolloutContext   one deploy (its record, its release, the previous release) and the
                     actions every strategy shares: set traffic, send it back, smoke,
                     confirm
    DeployOutcome    what a strategy's `run` returns

Strategies (direct.py, rolling.py, canary.py) import this module and lower ones only;
the controller picks one from the table in strategies.py and hands it a context.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from conveyor.analysis.business import BusinessGuard
from conveyor.analysis.providers.base import MetricsProvider
from conveyor.clock import SYSTEM_CLOCK, Clock
from conveyor.deploy import routing
from conveyor.deploy.hooks import HookPhase, finished_indexes, run_hooks
from conveyor.deploy.locks import EnvironmentLock
from conveyor.deploy.log_errors import error_counter
from conveyor.deploy.model import (
    Backend,
    HealthCheck,
    MatchRule,
    ReleaseSpec,
    ReplicaState,
    ReplicaStatus,
    SignalSample,
)
from conveyor.deploy.routers.base import Router
from conveyor.deploy.routing import Share, free_ports, version_of
from conveyor.deploy.runtimes.base import Runtime
from conveyor.deploy.sampler import take_sample
from conveyor.deploy.smoke import SmokeResult, run_smoke
from conveyor.errors import ConveyorError
from conveyor.spec.environments import Environment, Probe
from conveyor.spec.strategy import Analysis, Strategy
from conveyor.states import DeployState, ReleaseState
from conveyor.store.ledger import DeployLedger, DeployRecord, EnvironmentRecord, ReleaseRecord
from conveyor.store.records import EventKind, EventRecord

_CRASHES_BEFORE_FAILING = 3  # restarts of one replica before it is ready: a broken release
# What a release's ledger state says while it should be running.
RUNNING_STATES = (
    ReleaseState.STARTING,
    ReleaseState.SERVING,
    ReleaseState.LIVE,
    ReleaseState.WARM,
)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """Everything the controller of one environment works with."""

    name: str
    spec: Environment
    runtime: Runtime
    router: Router
    ledger: DeployLedger
    lock: EnvironmentLock  # one controller at a time (deploy/locks.py)
    replica_env: Mapping[str, str] = field(default_factory=dict)  # env + secrets
    # Masks the environment's secrets in what is recorded or shown (smoke output).
    mask: Callable[[str], str] = field(default=lambda text: text)
    workdir: Path | None = None  # where smoke commands run
    # PATH for smoke commands: the deploying job's, so they find the tools its jobs find
    # (`python` may exist only in the virtualenv the pipeline runs with).
    command_path: str | None = None
    # The judge's counts for a progressive release (router signals, or Prometheus).
    provider: Callable[[Analysis], MetricsProvider] | None = None
    data_dir: Path | None = None  # writable, kept across releases (/data in a replica)
    # A fresh business guard for each judged step (None: no business guardrails).
    business: Callable[[], BusinessGuard | None] | None = None
    clock: Clock = SYSTEM_CLOCK  # every wait (drains, polls, analysis intervals)


@dataclass(frozen=True)
class DeployOutcome:
    deploy_id: int | None  # None when the release was already live
    release_id: str
    state: DeployState
    reason: str | None
    url: str
    smoke: tuple[SmokeResult, ...] = ()
    # A progressive release's figures: canary requests and errors, time with traffic,
    # the last verdict and its evidence, the rollback's switch time.
    report: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RollbackOutcome:
    from_release: str | None
    to_release: str
    switch_seconds: float  # from the command's decision until the router applied it
    url: str


class Superseded(ConveyorError):
    """Someone changed the environment's intent (a rollback) while this deploy ran."""


class Rollout(Protocol):
    """One strategy carrying one deploy out; made from a `RolloutContext`."""

    def run(self, url: str) -> DeployOutcome: ...


def release_name(environment: str, repository: str, digest: str) -> str:
    short = digest.split(":", 1)[-1][:12]
    name = repository.rsplit("/", maxsplit=1)[-1]
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)
    return f"{environment}-{safe}-{short}"


def baseline_name(stable: str) -> str:
    """A canary's baseline: the stable release started again under an id of its own."""
    return f"{stable}-baseline"


def raise_if_broken(release_id: str, replicas: list[ReplicaStatus]) -> None:
    """A replica that crashed repeatedly before it was ready, or stopped: a broken release."""
    for replica in replicas:
        crashing = replica.state is ReplicaState.CRASHED
        if replica.state is ReplicaState.STOPPED or (
            crashing and replica.restarts >= _CRASHES_BEFORE_FAILING
        ):
            detail = f": {replica.detail}" if replica.detail else ""
            raise ConveyorError(
                f"{release_id} replica {replica.index} crashed at start "
                f"({replica.restarts} restarts){detail}"
            )


def weighted(share: Share, weight: int) -> Share:
    return Share(share.release_id, share.version, share.addresses, weight)


class TargetActions:
    """What is done to one environment, with or without a deploy in progress."""

    def __init__(self, target: Target, progress: Progress | None = None) -> None:
        self.target = target
        self.progress: Progress = progress or (lambda _message: None)
        self._sampled_at: float | None = None
        self._log_errors = error_counter(target.runtime)  # the releases' error log lines

    @property
    def clock(self) -> Clock:
        return self.target.clock

    def environment(self) -> EnvironmentRecord:
        ledger = self.target.ledger
        found = ledger.environments.get(self.target.name)
        if found is not None:
            return found
        port = self.target.spec.port or free_ports(1)[0]
        return ledger.environments.ensure(self.target.name, port, free_ports(1)[0])

    def known_release(self, release_id: str) -> ReleaseRecord | None:
        return self.target.ledger.releases.get(release_id, self.target.name)

    def share_of(self, release_id: str | None, weight: int) -> Share | None:
        if release_id is None:
            return None
        release = self.known_release(release_id)
        if release is None:
            return None
        return Share(
            release_id, version_of(release.digest), routing.addresses(release.ports), weight
        )

    def release_spec(
        self, release_id: str, repository: str, digest: str, ports: Sequence[int]
    ) -> ReleaseSpec:
        health = self.target.spec.health
        env = {
            **self.target.replica_env,
            "CONVEYOR_ENVIRONMENT": self.target.name,
            "CONVEYOR_RELEASE": release_id,
            "CONVEYOR_VERSION": version_of(digest),
        }
        data_dir = self.target.data_dir
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        return ReleaseSpec(
            release_id=release_id,
            repository=repository,
            digest=digest,
            ports=tuple(ports),
            env=env,
            readiness=_check(health.readiness),
            liveness=_check(health.liveness),
            secrets=tuple(name for name in self.target.spec.secrets if name in env),
            data_dir=str(data_dir.absolute()) if data_dir is not None else None,
        )

    def running(self, release_id: str) -> bool:
        return release_id in self.target.runtime.releases()

    def start_release(self, release_id: str) -> None:
        """Start a recorded release again if its replicas are gone (idempotent)."""
        release = self.known_release(release_id)
        if release is None or self.running(release_id):
            return
        spec = self.release_spec(release_id, release.repository, release.digest, release.ports)
        self.target.runtime.start(spec)

    def wait_ready(self, release_id: str) -> None:
        self.target.runtime.wait_ready(release_id, self.target.spec.health.ready_timeout)

    def retire(self, release_id: str) -> None:
        self.target.ledger.releases.set_state(self.target.name, release_id, ReleaseState.RETIRED)

    def stop_after_drain(self, release_id: str) -> None:
        """Requests in flight on a release taken out of traffic finish before it stops."""
        if not self.running(release_id):
            return
        drain = self.target.spec.drain
        if drain > 0:
            self.progress(f"draining {release_id} for {drain:g} s")
            self.clock.sleep(drain)
        self.target.runtime.stop(release_id)

    def stop_strays(self, *, switched: bool = False) -> list[str]:
        """Stop the running releases of this environment the ledger says do not run:
        neither live nor warm nor part of a deploy in progress. They are what a controller
        killed between recording a switch and stopping a release leaves behind (the
        release a deploy retired, the one a rollback failed, a canary and its baseline).
        They have no traffic in the recorded routes, at the latest since the last change
        of intent (or now, if the router was just `switched` to them): requests in flight
        get what is left of `drain` since then."""
        ledger = self.target.ledger
        environment = ledger.environments.get(self.target.name)
        if environment is None:
            return []
        wanted = {environment.live_release, environment.warm_release}
        for record in ledger.deploys.of_environment(self.target.name, DeployState.IN_PROGRESS):
            wanted |= {record.release_id, baseline_name(record.previous_release or "")}
        running = set(self.target.runtime.releases())
        strays = [
            release
            for release in ledger.releases.of_environment(self.target.name)
            if release.release_id in running and release.release_id not in wanted
        ]
        # Wall time: the ledger records when the intent changed in epoch seconds.
        since = 0.0 if switched else time.time() - environment.updated_at
        drain = max(0.0, self.target.spec.drain - since)
        if strays and drain > 0:
            self.progress(f"draining {len(strays)} release(s) for {drain:.1f} s")
            self.clock.sleep(drain)
        for release in strays:
            self.progress(f"stopping {release.release_id}: the ledger says it does not run")
            self.target.runtime.stop(release.release_id)
            if release.state in RUNNING_STATES:
                self.retire(release.release_id)
        return [release.release_id for release in strays]

    def sample(self, at_most_every: float = 0.0) -> list[SignalSample]:
        """Record the golden signals of every routed release (the judge's time series)."""
        now = self.clock.monotonic()
        if self._sampled_at is not None and now - self._sampled_at < at_most_every:
            return []
        self._sampled_at = now
        target = self.target
        return take_sample(
            target.name, target.router, target.runtime, target.ledger, self._log_errors
        )


class RolloutContext(TargetActions):
    """One deploy being carried out: `record` (the ledger's), `release` (what runs),
    `previous` (the release it replaces, all its traffic; None for a first deploy)."""

    def __init__(
        self,
        target: Target,
        record: DeployRecord,
        release: ReleaseSpec,
        previous: Share | None,
        progress: Progress | None = None,
    ) -> None:
        super().__init__(target, progress)
        self.record = record
        self.release = release
        self.previous = previous
        # The intent's generation after our last change: another means a rollback came.
        self._generation = target.ledger.environments.generation(target.name)

    @property
    def strategy(self) -> Strategy | None:
        """The environment's `strategy:` settings (the strategy's own among them)."""
        return self.target.spec.strategy

    @property
    def ready_timeout(self) -> float:
        return self.target.spec.health.ready_timeout

    def metrics_provider(self, settings: Analysis) -> MetricsProvider:
        """The judge's source of counts for these analysis settings."""
        if self.target.provider is None:
            raise ConveyorError(f"{self.target.name} has no metrics provider to judge with")
        return self.target.provider(settings)

    def business_guard(self) -> BusinessGuard | None:
        """The business guardrails of one judged step, if the environment has any."""
        return self.target.business() if self.target.business is not None else None

    def register_release(
        self, release_id: str, repository: str, digest: str, ports: Sequence[int]
    ) -> None:
        """A release started beside the deploy's own (a canary's baseline)."""
        self.target.ledger.releases.register(
            self.target.name, release_id, repository, digest, ports
        )

    def new_share(self, weight: int, addresses: Sequence[str] | None = None) -> Share:
        """The new release with `weight`; all its replicas unless `addresses` says which."""
        release = self.release
        found = routing.addresses(release.ports) if addresses is None else tuple(addresses)
        return Share(release.release_id, version_of(release.digest), found, weight)

    def start_new(self) -> None:
        self.target.runtime.start(self.release)

    def replicas(self) -> list[ReplicaStatus]:
        return self.target.runtime.status(self.release.release_id)

    def record_event(self, kind: EventKind, **data: Any) -> None:
        """An event of this deploy in the environment's log."""
        self.target.ledger.history.record(kind, self.target.name, deploy_id=self.record.id, **data)

    def run_hooks(self, phase: HookPhase) -> str | None:
        """The environment's hooks of `phase`, but those this deploy already ran (it may
        be a resumed one); the reason the deploy must stop, or None (deploy/hooks.py)."""
        hooks = self.target.spec.hooks
        listed = hooks.before_traffic if phase is HookPhase.BEFORE_TRAFFIC else hooks.after_traffic
        if not listed:
            return None
        ran = [
            event.data
            for event in self.target.ledger.history.events(
                self.target.name, (EventKind.RELEASE_HOOK,), deploy_id=self.record.id
            )
        ]
        return run_hooks(
            self.target.runtime,
            self.release,
            phase,
            listed,
            done=finished_indexes(ran, phase),
            say=self.progress,
            record=lambda **data: self.record_event(EventKind.RELEASE_HOOK, **data),
        )

    def failed_before_traffic(self, reason: str, url: str) -> DeployOutcome:
        """A before-traffic hook failed: the release never started nor had traffic, so the
        routes stay as they are (the previous release serves everything)."""
        self.progress(f"deploy failed: {reason}")
        self.target.ledger.releases.set_state(
            self.target.name, self.record.release_id, ReleaseState.FAILED
        )
        self.finish(DeployState.FAILED, reason)
        if self.running(self.record.release_id):  # a resumed deploy had started it
            self.target.runtime.stop(self.record.release_id)
        return self.outcome(DeployState.FAILED, reason, url)

    def commands(self, after: int) -> list[EventRecord]:
        """The person's commands for this deploy (promote, abort, ...) after event `after`."""
        return self.target.ledger.deploys.commands(self.record.id, after)

    def save_progress(self, progress: Mapping[str, Any]) -> None:
        self.target.ledger.deploys.set_progress(self.record.id, progress)

    def finish(self, state: DeployState, reason: str | None) -> None:
        self.target.ledger.deploys.finish(self.record.id, state, reason)

    def pin_header(self) -> str:
        """The header that pins a request to a version (smoke tests of a canary)."""
        return self.target.router.routes().pin_header

    def check_superseded(self) -> None:
        """Raises Superseded if someone else changed the intent since our last change, and
        EnvironmentLockLost if this controller no longer holds the environment's lock."""
        self.target.lock.check()
        if self.target.ledger.environments.generation(self.target.name) != self._generation:
            raise Superseded(f"{self.target.name} was rolled back while deploying")

    def set_traffic(
        self,
        shares: list[Share],
        why: str,
        *,
        live: str | None = None,
        warm: str | None = None,
        states: Mapping[str, ReleaseState] | None = None,
        check_superseded: bool = True,
        event: EventKind = EventKind.TRAFFIC_SHIFTED,
        data: Mapping[str, Any] | None = None,
        matches: Sequence[MatchRule] = (),
    ) -> None:
        """Record the new routes as the environment's intent (with `event`), then apply
        them. Raises Superseded if someone else changed the intent since our last change."""
        ledger, record = self.target.ledger, self.record
        if check_superseded:
            self.check_superseded()
        environment = self.environment()
        routes = routing.table(shares, matches)
        details = {"deploy_id": record.id, "why": why, "weights": routing.weights(routes)}
        states = {**self._now_serving(shares), **(states or {})}
        self._generation = ledger.environments.set_intent(
            self.target.name,
            routes=routing.to_json(routes),
            live=live if live is not None else environment.live_release,
            warm=warm if live is not None else environment.warm_release,
            event=event,
            actor=record.actor if event is EventKind.TRAFFIC_SHIFTED else "conveyor",
            data={**details, **(data or {})},
            release_states=states,
        )
        self.target.router.set_routes(routes)
        self.progress(f"traffic: {describe_weights(routes.backends)} ({why})")

    def _now_serving(self, shares: Sequence[Share]) -> dict[str, ReleaseState]:
        """Releases still `starting` that this change gives a share of traffic: they are
        ready (nothing is routed before it is) and serving."""
        serving = {}
        for share in shares:
            release = self.known_release(share.release_id) if share.weight > 0 else None
            if release is not None and release.state is ReleaseState.STARTING:
                serving[share.release_id] = ReleaseState.SERVING
        return serving

    def send_back(
        self,
        to: Share | None,
        why: str,
        reason: str,
        event: EventKind = EventKind.ROLLBACK,
    ) -> float:
        """All traffic to `to` (the release the deploy started from) at once, whatever
        changed meanwhile; the deploy's release is marked failed. Returns the seconds the
        switch took."""
        started = self.clock.monotonic()
        environment = self.environment()
        record = self.record
        self.set_traffic(
            [to] if to else [],
            why,
            live=environment.live_release,
            warm=environment.warm_release,
            states={record.release_id: ReleaseState.FAILED},
            check_superseded=False,
            event=event,
            data={"from": record.release_id, "to": record.previous_release, "reason": reason},
        )
        return self.clock.monotonic() - started

    def smoke(self, url: str, headers: Mapping[str, str] | None = None) -> list[SmokeResult]:
        checks = self.target.spec.smoke
        if not checks:
            return []
        self.progress(f"smoke tests against {url}")
        command_path = self.target.command_path
        env = {**({"PATH": command_path} if command_path else {}), **self.target.replica_env}
        results = run_smoke(
            checks, url, env=env, cwd=self.target.workdir, headers=headers, mask=self.target.mask
        )
        for result in results:
            self.record_event(
                EventKind.SMOKE_RESULT,
                release=self.record.release_id,
                check=result.title,
                verdict=result.verdict,
                detail=result.detail,
            )
        return results

    def confirm(self) -> None:
        """The new release is live; the previous one stays warm; the one before retires."""
        record = self.record
        environment = self.environment()
        previous = record.previous_release
        if previous is not None and not self.running(previous):
            previous = None  # stopped meanwhile: not a warm release to roll back to
        retired = [
            release_id
            for release_id in (environment.live_release, environment.warm_release)
            if release_id is not None and release_id not in (record.release_id, previous)
        ]
        shares = [self.new_share(100)] + ([self.share_of(previous, 0)] if previous else [])
        states = {record.release_id: ReleaseState.LIVE}
        if previous is not None:
            states[previous] = ReleaseState.WARM
        for release_id in retired:
            states[release_id] = ReleaseState.RETIRED
        self.set_traffic(
            [s for s in shares if s is not None],
            "deploy confirmed",
            live=record.release_id,
            warm=previous,
            states=states,
        )
        self.finish(DeployState.SUCCEEDED, None)
        self.sample()
        # Killed from here on, the retired release runs on: `stop_strays` (in the next
        # reconcile or deploy) stops it, since the ledger already says it does not run.
        for release_id in retired:
            self.stop_after_drain(release_id)

    def superseded(
        self, reason: str, url: str, smoke: tuple[SmokeResult, ...] = ()
    ) -> DeployOutcome:
        """A rollback changed the intent meanwhile: it stands, and the releases this deploy
        started stop (unless the rollback went to one of them)."""
        self.finish(DeployState.ROLLED_BACK, reason)
        self.stop_strays()
        return self.outcome(DeployState.ROLLED_BACK, reason, url, smoke)

    def outcome(
        self,
        state: DeployState,
        reason: str | None,
        url: str,
        smoke: tuple[SmokeResult, ...] = (),
        report: Mapping[str, Any] | None = None,
    ) -> DeployOutcome:
        record = self.record
        return DeployOutcome(record.id, record.release_id, state, reason, url, smoke, report or {})


def _check(probe: Probe) -> HealthCheck:
    return HealthCheck(probe.path, probe.interval, probe.timeout, probe.failure_threshold)


def describe_weights(backends: Sequence[Backend]) -> str:
    parts = [f"{b.release_id} {b.weight}%" for b in backends]
    return ", ".join(parts) or "no backends"
