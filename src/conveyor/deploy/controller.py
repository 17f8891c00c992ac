"""The release controller of one environment: deploy, roll back, reconcile.

Desired state lives in the store (the ledger) and is written *before* anything changes,
so a controller killed at any point is finished by the next one (`reconcile`): it adopts
the interrupted deploy and carries it on from what the runtime and the router show. Every
step is idempotent (a release id names one digest in one environment; starting a running
release leaves it alone; setting routes twice is setting them once), so a resumed deploy
never starts a second copy of anything.

A deploy is carried out by a strategy from the table in strategies.py, working through a
`RolloutContext` (rollout.py); the controller decides which, and never the reverse.

The data plane (router and replicas) runs in processes of its own and keeps serving with
its last routes while no controller is alive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from conveyor.deploy import routing
from conveyor.deploy.hooks import HookPhase
from conveyor.deploy.locks import EnvironmentLockHeld
from conveyor.deploy.rollout import (
    RUNNING_STATES,
    DeployOutcome,
    RollbackOutcome,
    RolloutContext,
    TargetActions,
    release_name,
)
from conveyor.deploy.routing import Share, free_ports
from conveyor.deploy.strategies import STRATEGIES, StrategyKind, kind_of
from conveyor.errors import ConveyorError
from conveyor.states import DeployState, ReleaseState
from conveyor.store.ledger import DeployRecord, EnvironmentRecord
from conveyor.store.records import EventKind

_WAIT_FOR_LOCK_SECONDS = 0.5  # polls of a lock another controller holds


class ReleaseController(TargetActions):
    """Deploys, rollbacks and reconciliation of one environment (`Target`)."""

    # --- deploy -----------------------------------------------------------------------

    def deploy(
        self,
        repository: str,
        digest: str,
        actor: str,
        run_id: int | None = None,
        approval: Mapping[str, Any] | None = None,
    ) -> DeployOutcome:
        """`approval`: the approval this deploy is made under, recorded with it (opaque
        here: the service checks it before calling)."""
        release_id = release_name(self.target.name, repository, digest)
        awaited = self._wait_for_same_release(release_id)
        with self._deploy_lock():
            resumed = self._resume_interrupted()
            if resumed is not None and resumed.release_id == release_id:
                return resumed  # this release's own interrupted deploy: its outcome is ours
            if awaited is not None:
                return self._outcome_of(awaited)
            environment = self.environment()
            url = self.target.router.ensure_running()
            self.stop_strays(switched=self._apply_recorded_routes(environment))
            if environment.live_release == release_id and self.running(release_id):
                self.progress(f"{release_id} is already live")
                return DeployOutcome(None, release_id, DeployState.SUCCEEDED, "already live", url)
            previous = environment.live_release
            if previous is not None and not self.running(previous):
                # Stopped (`env stop`, a reboot): no traffic to it, nothing to keep warm.
                self.progress(f"{previous} is not running: deploying as to an empty environment")
                previous = None
            known = self.known_release(release_id)
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
                approval=approval,
            )
            return self._roll_out(record, ports)

    def _wait_for_same_release(self, release_id: str) -> int | None:
        """A deploy of this very release in progress (its controller died and another
        carries it on, or a second pipeline deploys the same image): wait until the lock is
        free and take that deploy's outcome, rather than start the release a second time.
        Its id, or None when there is none."""
        ongoing = [
            record
            for record in self.target.ledger.deploys.of_environment(
                self.target.name, DeployState.IN_PROGRESS
            )
            if record.release_id == release_id
        ]
        if not ongoing:
            return None
        said = False
        while True:
            try:
                with self._deploy_lock():
                    return ongoing[-1].id
            except EnvironmentLockHeld as held:
                if not said:
                    self.progress(
                        f"deploy {ongoing[-1].id} of {release_id} is being carried on by "
                        f"{held.holder}: waiting for its outcome"
                    )
                    said = True
            self.clock.sleep(_WAIT_FOR_LOCK_SECONDS)

    def _outcome_of(self, deploy_id: int) -> DeployOutcome:
        """The outcome of a deploy another controller finished."""
        record = self.target.ledger.deploys.get(deploy_id)
        self.progress(f"deploy {deploy_id} of {record.release_id}: {record.state.value}")
        url = self.target.router.ensure_running()
        return DeployOutcome(record.id, record.release_id, record.state, record.reason, url)

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
            roles = (
                (environment.live_release, ReleaseState.LIVE),
                (environment.warm_release, ReleaseState.WARM),
            )
            for release_id, role in roles:
                if release_id is not None:
                    self.start_release(release_id)
                    self._restart_stopped(release_id, role)
            self.stop_strays(switched=switched)
            self.import_replica_events()
            return outcome

    def _restart_stopped(self, release_id: str, role: ReleaseState) -> None:
        """A release `env stop` stopped is running again in its role (live or warm)."""
        release = self.known_release(release_id)
        if release is not None and release.state is ReleaseState.STOPPED:
            self.target.ledger.releases.set_state(self.target.name, release_id, role)

    def _apply_recorded_routes(self, environment: EnvironmentRecord) -> bool:
        """The router serves the routes the ledger records (a controller may have died
        between recording them and applying them); whether they were not served yet."""
        routes = routing.from_json(environment.routes)
        if routes == self.target.router.routes():
            return False
        self.target.router.set_routes(routes)
        return True

    def _resume_interrupted(self) -> DeployOutcome | None:
        """Under the lock, a deploy in progress has no controller: the one that started it
        died or lost its lock (even one of this process's). Carry it on."""
        ledger = self.target.ledger
        for record in ledger.deploys.of_environment(self.target.name, DeployState.IN_PROGRESS):
            adopted = ledger.deploys.adopt(record.id, "the controller that started it is gone")
            release = self.known_release(record.release_id)
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
            self.target.name, (EventKind.ROLLBACK, EventKind.TRAFFIC_SHIFTED), deploy_id=record.id
        ):
            data = event.data
            if data.get("from") == record.release_id:
                rolled_back = event.kind == EventKind.ROLLBACK
                state = DeployState.ROLLED_BACK if rolled_back else DeployState.FAILED
                reason = str(data.get("reason") or reason)
        self.progress(f"finishing interrupted deploy {record.id}: {state.value} ({reason})")
        self.target.ledger.deploys.finish(record.id, state, reason)
        url = self.target.router.ensure_running()
        return DeployOutcome(record.id, record.release_id, state, reason, url)

    def _roll_out(self, record: DeployRecord, ports: tuple[int, ...] | list[int]) -> DeployOutcome:
        """Carry a recorded deploy out (or on, when resumed) with the environment's strategy."""
        url = self.target.router.ensure_running()
        release = self.release_spec(record.release_id, record.repository, record.digest, ports)
        previous = None
        if record.previous_release is not None and self.running(record.previous_release):
            previous = self.share_of(record.previous_release, 100)
        self.progress(f"starting {record.release_id} ({self.target.spec.replicas} replicas)")
        kind = self._strategy_kind(record, previous)
        context = RolloutContext(self.target, record, release, previous, self.progress)
        failure = context.run_hooks(HookPhase.BEFORE_TRAFFIC)
        if failure is not None:
            return context.failed_before_traffic(failure, url)
        return STRATEGIES.create(kind, context).run(url)

    def _strategy_kind(self, record: DeployRecord, previous: Share | None) -> StrategyKind:
        """The environment's strategy, unless this deploy goes straight: a first deploy
        (nothing to compare with or to replace) or, for a judged strategy, a digest that
        already succeeded here (the fast path back to a known good version skips
        analysis)."""
        if previous is None:
            return StrategyKind.DIRECT
        kind = kind_of(self.target.spec.strategy)
        if kind.judged and self.target.ledger.deploys.succeeded_digest(
            self.target.name, record.digest
        ):
            self.progress("a digest that succeeded here before: no analysis (fast path)")
            return StrategyKind.DIRECT
        return kind

    # --- rollback ---------------------------------------------------------------------

    def rollback(
        self,
        actor: str,
        to: str | None = None,
        reason: str = "",
        evidence: Mapping[str, Any] | None = None,
    ) -> RollbackOutcome:
        """All traffic to `to` (default: the warm previous release) at once. Takes no deploy
        lock: a deploy in flight sees the new intent and stops. `evidence` (an alert, say)
        is recorded in the rollback's event."""
        clock = self.clock
        started = clock.monotonic()
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
        if not self.running(target):
            self.progress(f"{target} is not warm: starting it first")
            self.start_release(target)
            self.wait_ready(target)
            started = clock.monotonic()
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
            data={
                "from": bad,
                "to": target,
                "reason": reason or "requested",
                **({"evidence": dict(evidence)} if evidence else {}),
            },
            release_states=states,
        )
        self.target.router.set_routes(routes)
        switched = clock.monotonic() - started
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

    def stop_all(self, actor: str | None = None) -> list[str]:
        """Stop the router and every running release the ledger records for this
        environment (not by the id's prefix: `staging-` also starts `staging-eu`'s ids).
        The ledger keeps history and intent: the releases that should run are marked
        STOPPED, and `reconcile` starts them again in their roles."""
        ledger = self.target.ledger
        ours = ledger.releases.of_environment(self.target.name)
        known = {release.release_id for release in ours}
        stopped = [
            release_id for release_id in self.target.runtime.releases() if release_id in known
        ]
        for release_id in stopped:
            self.target.runtime.stop(release_id)
        self.target.router.stop()
        for release in ours:
            if release.state in RUNNING_STATES:
                ledger.releases.set_state(
                    self.target.name, release.release_id, ReleaseState.STOPPED, actor
                )
        return stopped

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

    def _deploy_lock(self) -> contextlib.AbstractContextManager[None]:
        """One controller changes an environment at a time; the lock frees itself when its
        holder dies, which is how a successor knows a deploy was interrupted."""
        return self.target.lock.hold()


def _event_key(data: Mapping[str, object]) -> tuple[object, ...]:
    return tuple(
        data.get(name) for name in ("release", "event", "replica", "pid", "restarts", "code")
    )
