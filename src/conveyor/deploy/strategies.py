"""The one table of rollout strategies: the kind of a deploy -> the strategy that
carries it out. Adding a strategy = one module with a `from_context` factory (taking
the deploy's `RolloutContext` and the environment's `strategy:` settings) and one line
here; the controller never names a strategy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum

from conveyor.deploy import canary, direct, rolling
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


StrategyFactory = Callable[[RolloutContext, Strategy | None], Rollout]

STRATEGIES: Mapping[StrategyKind, StrategyFactory] = {
    StrategyKind.DIRECT: direct.from_context,
    StrategyKind.CANARY: canary.from_context,
    StrategyKind.BLUE_GREEN: canary.from_context,
    StrategyKind.AB: canary.from_context,
    StrategyKind.ROLLING: rolling.from_context,
}


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
