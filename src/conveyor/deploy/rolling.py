"""The rolling strategy: replicas replaced a few at a time, within surge and
unavailability limits, each new one only once it is ready.

Limits apply to the replicas serving traffic through the router: at any moment at most
`replicas + max_surge` serve and at least `replicas - max_unavailable` of them are ready.
The runtime starts the new release's replicas together; the router admits them one by
one and takes the old ones out one by one, so traffic follows the count of replicas of
each version. The old release keeps running (warm) until the next deploy is confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.deploy.direct import POLL, SAMPLE_INTERVAL, DirectRollout
from conveyor.deploy.model import ReplicaState
from conveyor.deploy.rollout import RolloutContext, raise_if_broken
from conveyor.deploy.routing import Share
from conveyor.errors import ConveyorError
from conveyor.spec.strategy import Rolling


@dataclass
class Serving:
    """How many replicas of each version serve now."""

    old: int
    new: int

    @property
    def total(self) -> int:
        return self.old + self.new


def next_move(serving: Serving, ready_new: int, replicas: int, limits: Rolling) -> str | None:
    """ "add" a ready new replica, "remove" an old one, or None to wait for readiness."""
    if serving.new < ready_new and serving.total < replicas + limits.max_surge:
        return "add"
    if serving.old > 0 and serving.total - 1 >= replicas - limits.max_unavailable:
        return "remove"
    return None


class RollingRollout(DirectRollout):
    """A direct rollout whose traffic shift honours the surge and unavailability limits."""

    def __init__(self, ctx: RolloutContext, limits: Rolling) -> None:
        super().__init__(ctx)
        self.limits = limits

    def _shift_while_ready(self) -> None:
        ctx, release = self.ctx, self.ctx.release
        replicas = release.replicas
        old_addresses = ctx.previous.addresses if ctx.previous else ()
        serving = Serving(old=len(old_addresses), new=0)
        timeout = ctx.ready_timeout
        deadline = ctx.clock.monotonic() + timeout
        while serving.new < replicas or serving.old > 0:
            statuses = ctx.replicas()
            ready = [r.address for r in statuses if r.state is ReplicaState.READY]
            move = next_move(serving, len(ready), replicas, self.limits)
            if move is None:
                raise_if_broken(release.release_id, statuses)
                if ctx.clock.monotonic() >= deadline:
                    raise ConveyorError(
                        f"{release.release_id}: {serving.new}/{replicas} replicas ready after "
                        f"{timeout:g} s"
                    )
                ctx.clock.sleep(POLL)
                continue
            if move == "add":
                serving.new += 1
            else:
                serving.old -= 1
            self._route(serving, ready[: serving.new], old_addresses[: serving.old])
            ctx.sample(at_most_every=SAMPLE_INTERVAL)
            ctx.clock.sleep(self.limits.min_ready)

    def _route(self, serving: Serving, new: list[str], old: tuple[str, ...]) -> None:
        new_weight = round(100 * serving.new / serving.total) if serving.total else 100
        shares = [self.ctx.new_share(new_weight, new)]
        previous = self.ctx.previous
        if previous is not None:
            shares.append(Share(previous.release_id, previous.version, old, 100 - new_weight))
        why = f"rolling: {serving.new} new, {serving.old} old serving"
        self.ctx.set_traffic(shares, why)


def from_context(ctx: RolloutContext) -> RollingRollout:
    """The strategy table's factory: the `rolling:` limits."""
    strategy = ctx.strategy
    assert strategy is not None and strategy.rolling is not None
    return RollingRollout(ctx, strategy.rolling)
