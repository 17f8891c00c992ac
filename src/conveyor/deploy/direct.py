"""The direct strategy (no `strategy:` in conveyor.yml): traffic moves to the new release
replica by replica as each becomes ready, then the smoke tests run through the router.

A release that never gets ready (or crashes at start) fails the deploy with the previous
release still serving everything; a failed smoke test rolls back. The previous release
stays warm until the next deploy is confirmed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from conveyor.deploy import routing
from conveyor.deploy.model import ReleaseSpec, ReplicaState
from conveyor.deploy.routing import Share, version_of
from conveyor.deploy.smoke import SmokeResult, describe_failures, smoke_passed
from conveyor.errors import ConveyorError
from conveyor.states import DeployState
from conveyor.store.ledger import DeployRecord
from conveyor.store.records import EventKind

if TYPE_CHECKING:
    from conveyor.deploy.controller import DeployOutcome, ReleaseController

_POLL = 0.1
_SAMPLE_INTERVAL = 1.0  # golden signals recorded while traffic shifts


class DirectRollout:
    def __init__(
        self,
        controller: ReleaseController,
        record: DeployRecord,
        release: ReleaseSpec,
        previous: Share | None,
    ) -> None:
        self.c = controller
        self.record = record
        self.release = release
        self.previous = previous

    def run(self, url: str) -> DeployOutcome:
        from conveyor.deploy.controller import DeployOutcome, Superseded

        c, record = self.c, self.record
        try:
            c.target.runtime.start(self.release)
            self._shift_while_ready()
        except Superseded as error:
            return self._superseded(error.message, url)
        except ConveyorError as error:
            return self._fail(error.message, url)
        smoke = tuple(c.smoke(record, url))
        if not smoke_passed(smoke):
            reason = "smoke tests failed: " + describe_failures(smoke)
            self._roll_back(reason)
            return DeployOutcome(
                record.id, record.release_id, DeployState.ROLLED_BACK, reason, url, smoke
            )
        try:
            c.confirm(record, self.release)
        except Superseded as error:
            return self._superseded(error.message, url, smoke)
        return DeployOutcome(record.id, record.release_id, DeployState.SUCCEEDED, None, url, smoke)

    def _shift_while_ready(self) -> None:
        """Move traffic to the new release replica by replica, as each becomes ready."""
        from conveyor.deploy.controller import raise_if_broken

        c, release = self.c, self.release
        timeout = c.target.spec.health.ready_timeout
        deadline = time.monotonic() + timeout
        routed = -1
        while True:
            replicas = c.target.runtime.status(release.release_id)
            ready = [r for r in replicas if r.state is ReplicaState.READY]
            if len(ready) != routed:
                routed = len(ready)
                addresses = tuple(r.address for r in ready)
                new = Share(release.release_id, version_of(release.digest), addresses, 0)
                shares = routing.rolling_shares(new, routed, release.replicas, self.previous)
                why = f"{routed}/{release.replicas} replicas ready"
                c.set_traffic(shares, self.record, why)
            c.sample(at_most_every=_SAMPLE_INTERVAL)
            if routed == release.replicas:
                return
            raise_if_broken(release.release_id, replicas)
            if time.monotonic() >= deadline:
                states = "; ".join(f"replica {r.index}: {r.state}" for r in replicas)
                raise ConveyorError(
                    f"{release.release_id} is not ready after {timeout:g} s ({states})"
                )
            time.sleep(_POLL)

    def _superseded(
        self, reason: str, url: str, smoke: tuple[SmokeResult, ...] = ()
    ) -> DeployOutcome:
        """A rollback changed the intent meanwhile: it stands, and this release stops
        (unless the rollback went to it)."""
        from conveyor.deploy.controller import DeployOutcome

        c, record = self.c, self.record
        c.target.ledger.deploys.finish(record.id, DeployState.ROLLED_BACK, reason)
        c.stop_strays()
        return DeployOutcome(
            record.id, record.release_id, DeployState.ROLLED_BACK, reason, url, smoke
        )

    def _fail(self, reason: str, url: str) -> DeployOutcome:
        """Never took all traffic: the previous release serves everything again."""
        from conveyor.deploy.controller import DeployOutcome

        c, record = self.c, self.record
        c.progress(f"deploy failed: {reason}")
        c.send_back(record, self.previous, "deploy failed", reason, EventKind.TRAFFIC_SHIFTED)
        c.target.ledger.deploys.finish(record.id, DeployState.FAILED, reason)
        c.stop_after_drain(record.release_id)
        return DeployOutcome(record.id, record.release_id, DeployState.FAILED, reason, url)

    def _roll_back(self, reason: str) -> None:
        c, record = self.c, self.record
        c.progress(f"rolling back: {reason}")
        c.send_back(record, self.previous, "rolled back", reason, EventKind.ROLLBACK)
        c.target.ledger.deploys.finish(record.id, DeployState.ROLLED_BACK, reason)
        c.stop_after_drain(record.release_id)
