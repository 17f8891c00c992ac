"""The release controller of one environment: deploy, roll back, reconcile.

Desired state lives in the store (the ledger) and is written *before* anything changes,
so a controller killed at any point is finished by the next one (`reconcile`): it adopts
the interrupted deploy and carries it on from what the runtime and the router show. Every
step is idempotent (a release id names one digest in one environment; starting a running
release leaves it alone; setting routes twice is setting them once), so a resumed deploy
never starts a second copy of anything.

The data plane (router and replicas) runs in processes of its own and keeps serving with
its last routes while no controller is alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.analysis.providers.base import MetricsProvider
from conveyor.deploy import routing
from conveyor.deploy.model import (
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
from conveyor.spec.strategy import Analysis, Canary
from conveyor.states import DeployState, ReleaseState
from conveyor.store.ledger import DeployLedger, DeployRecord, EnvironmentRecord
from conveyor.store.records import EventKind

_CRASHES_BEFORE_FAILING = 3  # restarts of one replica before it is ready: a broken release
# What a release's ledger state says while it should be running.
_RUNNING_STATES = (ReleaseState.STARTING, ReleaseState.LIVE, ReleaseState.WARM)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """Everything the controller of one environment works with."""

    name: str
    spec: Environment
    runtime: Runtime
    router: Router
    ledger: DeployLedger
    lock_path: Path
    replica_env: Mapping[str, str] = field(default_factory=dict)  # env + secrets
    # Masks the environment's secrets in what is recorded or shown (smoke output).
    mask: Callable[[str], str] = field(default=lambda text: text)
    workdir: Path | None = None  # where smoke commands run
    # PATH for smoke commands: the deploying job's, so they find the tools its jobs find
    # (`python` may exist only in the virtualenv the pipeline runs with).
    command_path: str | None = None
    # The judge's counts for a progressive release (router signals, or Prometheus).
    provider: Callable[[Analysis], MetricsProvider] | None = None
    data_dir: Path | None = None  # writable, kept across releases (CONVEYOR_DATA_DIR)


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


def release_name(environment: str, repository: str, digest: str) -> str:
    short = digest.split(":", 1)[-1][:12]
    name = repository.rsplit("/", maxsplit=1)[-1]
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)
    return f"{environment}-{safe}-{short}"


def baseline_name(stable: str) -> str:
    """A canary's baseline: the stable release started again under an id of its own."""
    return f"{stable}-baseline"


class ReleaseController:
    def __init__(self, target: Target, progress: Progress | None = None) -> None:
        self.target = target
        self.progress: Progress = progress or (lambda _message: None)
        self._generation = 0
        self._sampled_at = 0.0

    # --- deploy -----------------------------------------------------------------------

    def deploy(
        self, repository: str, digest: str, actor: str, run_id: int | None = None
    ) -> DeployOutcome:
        with self._deploy_lock():
            self._resume_interrupted()
            environment = self.environment()
            release_id = release_name(self.target.name, repository, digest)
            url = self.target.router.ensure_running()
            self.stop_strays(switched=self._apply_recorded_routes(environment))
            if environment.live_release == release_id and self._running(release_id):
                self.progress(f"{release_id} is already live")
                return DeployOutcome(None, release_id, DeployState.SUCCEEDED, "already live", url)
            previous = environment.live_release
            if previous is not None and not self._running(previous):
                # Stopped (`env stop`, a reboot): no traffic to it, nothing to keep warm.
                self.progress(f"{previous} is not running: deploying as to an empty environment")
                previous = None
            known = self.target.ledger.releases.get(release_id, self.target.name)
            ports = known.ports if known else free_ports(self.target.spec.replicas)
            record = self.target.ledger.deploys.begin(
                self.target.name,
                release_id=release_id,
                repository=repository,
                digest=digest,
                ports=ports,
                previous=previous,
                actor=actor,
                run_id=run_id,
            )
            return self._roll_out(record, ports)

    def reconcile(self) -> DeployOutcome | None:
        """Finish an interrupted deploy, restart a dead router or release, stop every
        release the ledger says does not run, import replica events. Returns the resumed
        deploy's outcome, if there was one."""
        with self._deploy_lock():
            outcome = self._resume_interrupted()
            environment = self.target.ledger.environments.get(self.target.name)
            if environment is None:
                return outcome
            self.target.router.ensure_running()
            switched = self._apply_recorded_routes(environment)
            for release_id in (environment.live_release, environment.warm_release):
                if release_id is not None:
                    self.start_release(release_id)
            self.stop_strays(switched=switched)
            self.import_replica_events()
            return outcome

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
        since = 0.0 if switched else time.time() - environment.updated_at
        drain = max(0.0, self.target.spec.drain - since)
        if strays and drain > 0:
            self.progress(f"draining {len(strays)} release(s) for {drain:.1f} s")
            time.sleep(drain)
        for release in strays:
            self.progress(f"stopping {release.release_id}: the ledger says it does not run")
            self.target.runtime.stop(release.release_id)
            if release.state in _RUNNING_STATES:
                ledger.releases.set_state(
                    self.target.name, release.release_id, ReleaseState.RETIRED
                )
        return [release.release_id for release in strays]

    def _apply_recorded_routes(self, environment: EnvironmentRecord) -> bool:
        """The router serves the routes the ledger records (a controller may have died
        between recording them and applying them); whether they were not served yet."""
        routes = routing.from_json(environment.routes)
        if routes == self.target.router.routes():
            return False
        self.target.router.set_routes(routes)
        return True

    def _resume_interrupted(self) -> DeployOutcome | None:
        ledger = self.target.ledger
        for record in ledger.deploys.of_environment(self.target.name, DeployState.IN_PROGRESS):
            if record.pid == os.getpid():
                continue
            adopted = ledger.deploys.adopt(record.id, "the controller that started it is gone")
            release = ledger.releases.get(record.release_id, self.target.name)
            assert release is not None
            if release.state is ReleaseState.FAILED:
                return self._finish_sent_back(adopted)
            self.progress(f"resuming interrupted deploy {record.id} of {record.release_id}")
            return self._roll_out(adopted, release.ports)
        return None

    def _finish_sent_back(self, record: DeployRecord) -> DeployOutcome:
        """The controller died after sending traffic back (`send_back` failed the release
        with the switch) but before it finished the deploy: finish it as the ledger says,
        rather than start the failed release again. `stop_strays` stops it."""
        state, reason = DeployState.FAILED, "its controller died after sending traffic back"
        for event in self.target.ledger.history.events(
            self.target.name, (EventKind.ROLLBACK, EventKind.TRAFFIC_SHIFTED)
        ):
            data = event.data
            if data.get("deploy_id") == record.id and data.get("from") == record.release_id:
                rolled_back = event.kind == EventKind.ROLLBACK
                state = DeployState.ROLLED_BACK if rolled_back else DeployState.FAILED
                reason = str(data.get("reason") or reason)
        self.progress(f"finishing interrupted deploy {record.id}: {state.value} ({reason})")
        self.target.ledger.deploys.finish(record.id, state, reason)
        url = self.target.router.ensure_running()
        return DeployOutcome(record.id, record.release_id, state, reason, url)

    def _roll_out(self, record: DeployRecord, ports: tuple[int, ...] | list[int]) -> DeployOutcome:
        """Carry a recorded deploy out (or on, when resumed) with the environment's strategy."""
        from conveyor.deploy.direct import DirectRollout

        self._generation = self.target.ledger.environments.generation(self.target.name)
        url = self.target.router.ensure_running()
        release = self.release_spec(record.release_id, record.repository, record.digest, ports)
        previous = None
        if record.previous_release is not None and self._running(record.previous_release):
            previous = self.share_of(record.previous_release, 100)
        self.progress(f"starting {record.release_id} ({self.target.spec.replicas} replicas)")
        canary = self._canary_for(record, previous)
        if canary is not None and previous is not None:
            from conveyor.deploy.canary import CanaryRollout

            assert self.target.provider is not None
            provider = self.target.provider(canary.analysis)
            strategy = self.target.spec.strategy
            match = strategy.ab if strategy is not None else None
            rollout = CanaryRollout(self, record, release, previous, canary, provider, match)
            return rollout.run(url)
        strategy = self.target.spec.strategy
        if strategy is not None and strategy.rolling is not None and previous is not None:
            from conveyor.deploy.rolling import RollingRollout

            rolling = RollingRollout(self, record, release, previous)
            rolling.limits = strategy.rolling
            return rolling.run(url)
        return DirectRollout(self, record, release, previous).run(url)

    def _canary_for(self, record: DeployRecord, previous: Share | None) -> Canary | None:
        """The canary settings, unless this deploy goes straight: a first deploy (nothing to
        compare with) or a digest that already succeeded here (the fast path back to a
        known good version skips analysis)."""
        strategy = self.target.spec.strategy
        if strategy is None or strategy.rolling is not None or previous is None:
            return None
        if self.target.ledger.deploys.succeeded_digest(self.target.name, record.digest):
            self.progress("a digest that succeeded here before: no analysis (fast path)")
            return None
        return strategy.as_canary()

    def _smoke_env(self) -> dict[str, str]:
        path = {"PATH": self.target.command_path} if self.target.command_path else {}
        return {**path, **self.target.replica_env}

    def smoke(
        self, record: DeployRecord, url: str, headers: Mapping[str, str] | None = None
    ) -> list[SmokeResult]:
        checks = self.target.spec.smoke
        if not checks:
            return []
        self.progress(f"smoke tests against {url}")
        results = run_smoke(
            checks,
            url,
            env=self._smoke_env(),
            cwd=self.target.workdir,
            headers=headers,
            mask=self.target.mask,
        )
        for result in results:
            self.target.ledger.history.record(
                EventKind.SMOKE_RESULT,
                self.target.name,
                deploy_id=record.id,
                release=record.release_id,
                check=result.title,
                verdict=result.verdict,
                detail=result.detail,
            )
        return results

    def confirm(self, record: DeployRecord, release: ReleaseSpec) -> None:
        """The new release is live; the previous one stays warm; the one before retires."""
        environment = self.environment()
        previous = record.previous_release
        if previous is not None and not self._running(previous):
            previous = None  # stopped meanwhile: not a warm release to roll back to
        retired = [
            release_id
            for release_id in (environment.live_release, environment.warm_release)
            if release_id is not None and release_id not in (record.release_id, previous)
        ]
        new = Share(
            record.release_id, version_of(release.digest), routing.addresses(release.ports), 100
        )
        shares = [new] + ([self.share_of(previous, 0)] if previous else [])
        states = {record.release_id: ReleaseState.LIVE}
        if previous is not None:
            states[previous] = ReleaseState.WARM
        for release_id in retired:
            states[release_id] = ReleaseState.RETIRED
        self.set_traffic(
            [s for s in shares if s is not None],
            record,
            "deploy confirmed",
            live=record.release_id,
            warm=previous,
            states=states,
        )
        self.target.ledger.deploys.finish(record.id, DeployState.SUCCEEDED, None)
        self.sample()
        # Killed from here on, the retired release runs on: `stop_strays` (in the next
        # reconcile or deploy) stops it, since the ledger already says it does not run.
        for release_id in retired:
            self.stop_after_drain(release_id)

    # --- rollback ---------------------------------------------------------------------

    def rollback(self, actor: str, to: str | None = None, reason: str = "") -> RollbackOutcome:
        """All traffic to `to` (default: the warm previous release) at once. Takes no deploy
        lock: a deploy in flight sees the new intent and stops."""
        started = time.monotonic()
        environment = self.environment()
        target = to or environment.warm_release
        if target is None:
            raise ConveyorError(
                f"{self.target.name} has no previous release to roll back to",
                hint=f"`conveyor env history {self.target.name}` lists releases; use --to",
            )
        self._refuse_unproven(target)
        share = self.share_of(target, 100)
        if share is None:
            raise ConveyorError(f"no release {target!r} in {self.target.name}")
        if not self._running(target):
            self.progress(f"{target} is not warm: starting it first")
            self.start_release(target)
            self.target.runtime.wait_ready(target, self.target.spec.health.ready_timeout)
            started = time.monotonic()
        bad = environment.live_release if environment.live_release != target else None
        # A warm release that is not the target has no role after the switch: retire it.
        spare = environment.warm_release
        spare = spare if spare not in (None, target, bad) else None
        states = {target: ReleaseState.LIVE}
        if bad is not None:
            states[bad] = ReleaseState.FAILED
        if spare is not None:
            states[spare] = ReleaseState.RETIRED
        routes = routing.table([share])
        self.target.ledger.environments.set_intent(
            self.target.name,
            routes=routing.to_json(routes),
            live=target,
            warm=None,
            event=EventKind.ROLLBACK,
            actor=actor,
            data={"from": bad, "to": target, "reason": reason or "requested"},
            release_states=states,
        )
        self.target.router.set_routes(routes)
        switched = time.monotonic() - started
        self.progress(f"all traffic on {target} after {switched:.3f} s")
        for release_id in (bad, spare):
            if release_id is not None:
                self.stop_after_drain(release_id)
        return RollbackOutcome(bad, target, switched, self.target.router.ensure_running())

    def _refuse_unproven(self, release_id: str) -> None:
        """A rollback skips every check of a deploy (promotion order, approval, admission,
        smoke tests), so it only goes back to a release a deploy made live here."""
        name = self.target.name
        if self.target.ledger.deploys.succeeded_release(name, release_id):
            return
        raise ConveyorError(
            f"{release_id} was never live in {name}: a rollback only goes back to a "
            f"release that a deploy to {name} made live",
            hint=f"`conveyor deploy {name} IMAGE` deploys it with every check "
            "(promotion order, approval, admission, smoke tests); "
            f"`conveyor env history {name}` lists the releases that were live",
        )

    # --- teardown ---------------------------------------------------------------------

    def stop_all(self) -> list[str]:
        """Stop the router and every running release the ledger records for this
        environment (not by the id's prefix: `staging-` also starts `staging-eu`'s ids);
        the ledger keeps history."""
        ours = {
            release.release_id
            for release in self.target.ledger.releases.of_environment(self.target.name)
        }
        stopped = [
            release_id for release_id in self.target.runtime.releases() if release_id in ours
        ]
        for release_id in stopped:
            self.target.runtime.stop(release_id)
        self.target.router.stop()
        return stopped

    def sample(self, at_most_every: float = 0.0) -> list[SignalSample]:
        """Record the golden signals of every routed release (the judge's time series)."""
        if time.monotonic() - self._sampled_at < at_most_every:
            return []
        self._sampled_at = time.monotonic()
        target = self.target
        return take_sample(target.name, target.router, target.runtime, target.ledger)

    def import_replica_events(self) -> int:
        """Copy the runtime's replica events (exits, restarts) into the event log, once."""
        ledger = self.target.ledger
        seen = {
            _event_key(event.data)
            for event in ledger.history.events(self.target.name, (EventKind.REPLICA_EVENT,))
        }
        added = 0
        for release in ledger.releases.of_environment(self.target.name):
            if release.state in (ReleaseState.RETIRED, ReleaseState.FAILED):
                continue
            for raw in self.target.runtime.replica_events(release.release_id):
                data = {**raw, "release": release.release_id}
                if _event_key(data) not in seen:
                    ledger.history.record(EventKind.REPLICA_EVENT, self.target.name, **data)
                    added += 1
        return added

    # --- internals --------------------------------------------------------------------

    def set_traffic(
        self,
        shares: list[Share],
        record: DeployRecord,
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
        ledger = self.target.ledger
        if (
            check_superseded
            and ledger.environments.generation(self.target.name) != self._generation
        ):
            raise Superseded(f"{self.target.name} was rolled back while deploying")
        environment = self.environment()
        routes = routing.table(shares, matches)
        details = {"deploy_id": record.id, "why": why, "weights": routing.weights(routes)}
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
        self.progress(f"traffic: {_describe_weights(routes)} ({why})")

    def send_back(
        self,
        record: DeployRecord,
        to: Share | None,
        why: str,
        reason: str,
        event: EventKind = EventKind.ROLLBACK,
    ) -> float:
        """All traffic to `to` (the release the deploy started from) at once, whatever
        changed meanwhile; the deploy's release is marked failed. Returns the seconds the
        switch took."""
        started = time.monotonic()
        environment = self.environment()
        self.set_traffic(
            [to] if to else [],
            record,
            why,
            live=environment.live_release,
            warm=environment.warm_release,
            states={record.release_id: ReleaseState.FAILED},
            check_superseded=False,
            event=event,
            data={"from": record.release_id, "to": record.previous_release, "reason": reason},
        )
        return time.monotonic() - started

    def environment(self) -> EnvironmentRecord:
        ledger = self.target.ledger
        found = ledger.environments.get(self.target.name)
        if found is not None:
            return found
        port = self.target.spec.port or free_ports(1)[0]
        return ledger.environments.ensure(self.target.name, port, free_ports(1)[0])

    def share_of(self, release_id: str | None, weight: int) -> Share | None:
        if release_id is None:
            return None
        release = self.target.ledger.releases.get(release_id, self.target.name)
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
        if self.target.data_dir is not None:
            self.target.data_dir.mkdir(parents=True, exist_ok=True)
            env["CONVEYOR_DATA_DIR"] = str(self.target.data_dir)
        return ReleaseSpec(
            release_id=release_id,
            repository=repository,
            digest=digest,
            ports=tuple(ports),
            env=env,
            readiness=_check(health.readiness),
            liveness=_check(health.liveness),
            secrets=tuple(name for name in self.target.spec.secrets if name in env),
        )

    def start_release(self, release_id: str) -> None:
        """Start a recorded release again if its replicas are gone (idempotent)."""
        release = self.target.ledger.releases.get(release_id, self.target.name)
        if release is None or self._running(release_id):
            return
        spec = self.release_spec(release_id, release.repository, release.digest, release.ports)
        self.target.runtime.start(spec)

    def _running(self, release_id: str) -> bool:
        return release_id in self.target.runtime.releases()

    def stop_after_drain(self, release_id: str) -> None:
        """Requests in flight on a release taken out of traffic finish before it stops."""
        if not self._running(release_id):
            return
        drain = self.target.spec.drain
        if drain > 0:
            self.progress(f"draining {release_id} for {drain:g} s")
            time.sleep(drain)
        self.target.runtime.stop(release_id)

    @contextlib.contextmanager
    def _deploy_lock(self) -> Iterator[None]:
        """One controller changes an environment at a time; the kernel frees the lock when
        its holder dies, which is how a successor knows a deploy was interrupted."""
        path = self.target.lock_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise ConveyorError(
                    f"{self.target.name} is being changed by {holder}",
                    hint="wait for it, or `conveyor rollback` (which does not wait)",
                ) from None
            handle.truncate(0)
            handle.write(f"pid {os.getpid()}\n")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _check(probe: Probe) -> HealthCheck:
    return HealthCheck(probe.path, probe.interval, probe.timeout, probe.failure_threshold)


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


def _describe_weights(routes: object) -> str:
    assert hasattr(routes, "backends")
    parts = [f"{b.release_id} {b.weight}%" for b in routes.backends]
    return ", ".join(parts) or "no backends"


def _event_key(data: Mapping[str, object]) -> tuple[object, ...]:
    return tuple(
        data.get(name) for name in ("release", "event", "replica", "pid", "restarts", "code")
    )
