"""The direct strategy (no `strategy:` in conveyor.yml): traffic moves to the new release
replica by replica as each becomes ready, then the smoke tests run through the router.

A release that never gets ready (or crashes at start) fails the deploy with the previous
release still serving everything; a failed smoke test rolls back. The previous release
stays warm until the next deploy is confirmed.
"""

from __future__ import annotations

from conveyor.deploy import routing
from conveyor.deploy.hooks import HookPhase
from conveyor.deploy.model import ReplicaState
from conveyor.deploy.rollout import DeployOutcome, RolloutContext, Superseded, raise_if_broken
from conveyor.deploy.smoke import describe_failures, smoke_passed
from conveyor.errors import ConveyorError
from conveyor.states import DeployState
from conveyor.store.records import EventKind

POLL = 0.1  # seconds between looks at the new release's replicas
SAMPLE_INTERVAL = 1.0  # golden signals recorded while traffic shifts


class DirectRollout:
    def __init__(self, ctx: RolloutContext) -> None:
        self.ctx = ctx

    def run(self, url: str) -> DeployOutcome:
        ctx = self.ctx
        try:
            ctx.start_new()
            self._shift_while_ready()
        except Superseded as error:
            return ctx.superseded(error.message, url)
        except ConveyorError as error:
            return self._fail(error.message, url)
        smoke = tuple(ctx.smoke(url))
        if not smoke_passed(smoke):
            reason = "smoke tests failed: " + describe_failures(smoke)
            self._roll_back(reason)
            return ctx.outcome(DeployState.ROLLED_BACK, reason, url, smoke)
        failure = ctx.run_hooks(HookPhase.AFTER_TRAFFIC)
        if failure is not None:
            self._roll_back(failure)
            return ctx.outcome(DeployState.ROLLED_BACK, failure, url, smoke)
        try:
            ctx.confirm()
        except Superseded as error:
            return ctx.superseded(error.message, url, smoke)
        return ctx.outcome(DeployState.SUCCEEDED, None, url, smoke)

    def _shift_while_ready(self) -> None:
        """Move traffic to the new release replica by replica, as each becomes ready."""
        ctx, release = self.ctx, self.ctx.release
        timeout = ctx.ready_timeout
        deadline = ctx.clock.monotonic() + timeout
        routed = -1
        while True:
            replicas = ctx.replicas()
            ready = [r for r in replicas if r.state is ReplicaState.READY]
            if len(ready) != routed:
                routed = len(ready)
                new = ctx.new_share(0, [r.address for r in ready])
                shares = routing.rolling_shares(new, routed, release.replicas, ctx.previous)
                ctx.set_traffic(shares, f"{routed}/{release.replicas} replicas ready")
            ctx.sample(at_most_every=SAMPLE_INTERVAL)
            if routed == release.replicas:
                return
            raise_if_broken(release.release_id, replicas)
            if ctx.clock.monotonic() >= deadline:
                states = "; ".join(f"replica {r.index}: {r.state}" for r in replicas)
                raise ConveyorError(
                    f"{release.release_id} is not ready after {timeout:g} s ({states})"
                )
            ctx.clock.sleep(POLL)

    def _fail(self, reason: str, url: str) -> DeployOutcome:
        """Never took all traffic: the previous release serves everything again."""
        ctx = self.ctx
        ctx.progress(f"deploy failed: {reason}")
        ctx.send_back(ctx.previous, "deploy failed", reason, EventKind.TRAFFIC_SHIFTED)
        ctx.finish(DeployState.FAILED, reason)
        ctx.stop_after_drain(ctx.record.release_id)
        return ctx.outcome(DeployState.FAILED, reason, url)

    def _roll_back(self, reason: str) -> None:
        ctx = self.ctx
        ctx.progress(f"rolling back: {reason}")
        ctx.send_back(ctx.previous, "rolled back", reason, EventKind.ROLLBACK)
        ctx.finish(DeployState.ROLLED_BACK, reason)
        ctx.stop_after_drain(ctx.record.release_id)


def from_context(ctx: RolloutContext) -> DirectRollout:
    """The strategy table's factory (direct takes no settings)."""
    return DirectRollout(ctx)
