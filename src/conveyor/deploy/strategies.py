"""The one table of rollout strategies: the kind of a deploy -> the strategy that
carries it out. Adding a strategy = one module with a `from_context` factory (taking
the deploy's `RolloutContext`; its settings are the environment's `strategy:`) and one
line here; the controller never names a strategy module.

Like the backend tables, factories are named by module path and imported when a deploy
needs them: a direct deploy (or `conveyor env status`) never loads the judge."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from conveyor.backends import Backends

if TYPE_CHECKING:
    from conveyor.deploy.rollout import Rollout, RolloutContext
    from conveyor.spec.strategy import Strategy


class StrategyKind(StrEnum):
    DIRECT = "direct"  # no `strategy:`, a first deploy, or a known good digest
    CANARY = "canary"
    BLUE_GREEN = "blue_green"
    AB = "ab"
    ROLLING = "rolling"

    @property
    def judged(self) -> bool:
        """A canary in all but name: judged against the stable release it replaces."""
        return self in (StrategyKind.CANARY, StrategyKind.BLUE_GREEN, StrategyKind.AB)


STRATEGIES: Backends[RolloutContext, Rollout] = Backends(
    "rollout strategy",
    {
        StrategyKind.DIRECT: "conveyor.deploy.direct:from_context",
        # Blue-green and A/B tests are canaries (`Strategy.as_canary`).
        StrategyKind.CANARY: "conveyor.deploy.canary:from_context",
        StrategyKind.BLUE_GREEN: "conveyor.deploy.canary:from_context",
        StrategyKind.AB: "conveyor.deploy.canary:from_context",
        StrategyKind.ROLLING: "conveyor.deploy.rolling:from_context",
    },
)


def kind_of(strategy: Strategy | None) -> StrategyKind:
    """The kind conveyor.yml's `strategy:` names (exactly one is set, the spec checks)."""
    if strategy is None:
        return StrategyKind.DIRECT
    chosen = [
        kind
        for kind in StrategyKind
        if kind is not StrategyKind.DIRECT and getattr(strategy, kind.value) is not None
    ]
    return chosen[0]
