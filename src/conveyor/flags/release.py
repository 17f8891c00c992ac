"""A flag rolled out progressively and judged by the release judge.

    for each step percentage below 100: rollout to it, then judge every interval
        the "on" arm (users who get the feature) against the "off" arm (everyone else)
        promote: the next step │ rollback: the kill switch, at once │ inconclusive: as set

The two arms share one release, so their counts must come from the service itself: the
metrics provider is asked for the "releases" `on` and `off` (with Prometheus, templates
such as `sum(increase(shop_flag_requests_total{flag="banner",state="{release}"}[{window}]))`).
A rollback is the flag's kill switch: recorded as a kill, which the environment's history
counts as a rollback, with the judge's verdict as its reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from conveyor.analysis.business import BusinessGuard
from conveyor.analysis.judge import Reference
from conveyor.analysis.model import Decision, Verdict
from conveyor.analysis.polling import Arms, judged_windows
from conveyor.analysis.providers.base import MetricsProvider
from conveyor.clock import SleptClock
from conveyor.flags.store import FlagLedger
from conveyor.spec.strategy import Analysis, OnInconclusive

ON, OFF = "on", "off"  # the arms, as the provider's release names
Progress = Callable[[str], None]


class FlagReleaseState(StrEnum):
    RELEASED = "released"  # every step promoted: the flag is at the last percentage
    KILLED = "killed"  # the judge found harm: the kill switch turned it off
    PAUSED = "paused"  # inconclusive with `inconclusive: pause`: left at its step


@dataclass(frozen=True)
class FlagReleaseOutcome:
    state: FlagReleaseState
    percentage: int  # where the flag stands at the end
    reason: str
    decisions: list[Decision] = field(default_factory=list)  # the verdict of each step


@dataclass
class FlagRelease:
    ledger: FlagLedger
    environment: str
    flag: str
    steps: Sequence[int]
    analysis: Analysis
    provider: MetricsProvider
    actor: str = "conveyor"
    stickiness: str | None = None
    progress: Progress = field(default=lambda _message: None)
    sleep: Callable[[float], None] = time.sleep
    # A fresh business guard per judged step: the "on" users' ratios against the "off"
    # users' (the flag's variants, read from the service's counters).
    business: Callable[[], BusinessGuard | None] | None = None

    def run(self) -> FlagReleaseOutcome:
        decisions: list[Decision] = []
        percentage = 0
        for step in self.steps:
            percentage = step
            self.ledger.rollout(
                self.environment, self.flag, step, stickiness=self.stickiness, actor=self.actor
            )
            self.progress(f"{self.flag}: {step}% of {self.environment}")
            if step >= 100:
                break  # nobody left without the flag to compare with: the last judged step decided
            decision = self._judge_step()
            decisions.append(decision)
            self.progress(f"{self.flag} at {step}%: {decision.verdict.value}: {decision.reason}")
            if decision.verdict is Verdict.ROLLBACK:
                return self._kill(decision, decisions)
            if decision.verdict is Verdict.INCONCLUSIVE:
                choice = self.analysis.inconclusive
                if choice is OnInconclusive.ROLLBACK:
                    return self._kill(decision, decisions)
                if choice is OnInconclusive.PAUSE:
                    reason = f"inconclusive at {step}%: {decision.reason}"
                    return FlagReleaseOutcome(FlagReleaseState.PAUSED, step, reason, decisions)
        reason = f"every step promoted; {self.flag} at {percentage}%"
        return FlagReleaseOutcome(FlagReleaseState.RELEASED, percentage, reason, decisions)

    def _judge_step(self) -> Decision:
        # One release serves both arms: no baseline to start beside the flag. The judge's
        # clock is one interval per reading.
        windows = judged_windows(
            self.analysis,
            self.provider,
            Arms(canary=ON, stable=OFF),
            SleptClock(self.sleep),
            Reference.POOLED,
            guard=self.business() if self.business is not None else None,
        )
        return next(j.decision for j in windows if j.decision.verdict is not Verdict.CONTINUE)

    def _kill(self, decision: Decision, decisions: list[Decision]) -> FlagReleaseOutcome:
        reason = f"judge: {decision.reason}"
        self.ledger.kill(self.environment, self.flag, actor=self.actor, reason=reason)
        self.progress(f"{self.flag} killed: {decision.reason}")
        return FlagReleaseOutcome(FlagReleaseState.KILLED, 0, reason, decisions)
