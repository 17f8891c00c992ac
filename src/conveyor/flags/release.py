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

from conveyor.analysis.judge import Judge, Reference
from conveyor.analysis.model import Absolute, Counts, Decision, Observation, Verdict
from conveyor.analysis.providers.base import MetricsProvider
from conveyor.flags.store import FlagLedger
from conveyor.spec.strategy import Analysis, OnInconclusive

ON, OFF = "on", "off"  # the arms, as the provider's release names
DEFAULT_LATENCY_THRESHOLD = 0.25
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
        settings = self.analysis
        judge = Judge(
            settings,
            reference=Reference.POOLED,
            negligible_rate=settings.negligible_rate,
        )
        threshold = settings.latency_threshold or DEFAULT_LATENCY_THRESHOLD
        self.provider.start([ON, OFF], threshold)
        elapsed = 0.0
        while True:
            self.sleep(settings.interval)
            elapsed += settings.interval  # the judge's clock: one interval per reading
            readings = self.provider.read()
            on, off = readings.get(ON), readings.get(OFF)
            observation = Observation(
                elapsed=elapsed,
                canary=on.counts if on else Counts(),
                baseline=Counts(),  # one release: no baseline to start beside the flag
                stable=off.counts if off else Counts(),
                canary_absolute=on.absolute if on else Absolute(),
            )
            decision = judge.observe(observation)
            if decision.verdict is not Verdict.CONTINUE:
                return decision

    def _kill(self, decision: Decision, decisions: list[Decision]) -> FlagReleaseOutcome:
        reason = f"judge: {decision.reason}"
        self.ledger.kill(self.environment, self.flag, actor=self.actor, reason=reason)
        self.progress(f"{self.flag} killed: {decision.reason}")
        return FlagReleaseOutcome(FlagReleaseState.KILLED, 0, reason, decisions)
