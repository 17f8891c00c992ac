"""The one polling loop of a judged rollout: provider -> observation -> judge.

Every interval the metrics provider's readings of the arms become one observation, and
the judge decides on it. Canary releases (deploy/canary.py: canary, baseline and stable
releases) and flag releases (flags/release.py: the flag's "on" and "off" users) both
iterate it; what they do with each decision (commands, pauses, steps) stays theirs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from conveyor.analysis.business import BusinessGuard
from conveyor.analysis.judge import Judge, Reference
from conveyor.analysis.model import Absolute, Counts, Decision, Observation
from conveyor.analysis.providers.base import MetricsProvider, Reading
from conveyor.clock import Clock
from conveyor.spec.strategy import Analysis

DEFAULT_LATENCY_THRESHOLD = 0.25  # seconds: a slow request, when the analysis sets none


def latency_threshold(settings: Analysis) -> float:
    return settings.latency_threshold or DEFAULT_LATENCY_THRESHOLD


@dataclass(frozen=True)
class Arms:
    """The provider's names for what is compared: the new version, the stable one, and
    the stable version started again beside the new one (when there is such a baseline)."""

    canary: str
    stable: str
    baseline: str | None = None

    def names(self) -> list[str]:
        return [self.canary, self.stable] + ([self.baseline] if self.baseline else [])


@dataclass(frozen=True)
class Judged:
    decision: Decision
    canary: Reading  # what the new version served over the window


def judged_windows(
    settings: Analysis,
    provider: MetricsProvider,
    arms: Arms,
    clock: Clock,
    reference: Reference | None = None,
    *,
    guard: BusinessGuard | None = None,
) -> Iterator[Judged]:
    """Start the provider, then, every `settings.interval` for as long as the caller
    iterates, the judge's decision on the window just read. `reference` defaults to the
    settings' own. A `guard` (the business guardrails) reviews every decision: the canary
    against the baseline, else against stable."""
    judge = Judge(
        settings,
        reference=reference or Reference(settings.reference.value),
    )
    started = clock.monotonic()
    provider.start(arms.names(), latency_threshold(settings))
    if guard is not None:
        guard.start(arms.canary, arms.baseline or arms.stable, settings.max_duration)
    while True:
        clock.sleep(settings.interval)
        readings = provider.read()
        canary = reading_of(readings, arms.canary)
        observation = Observation(
            elapsed=clock.monotonic() - started,
            canary=canary.counts,
            baseline=reading_of(readings, arms.baseline).counts,
            stable=reading_of(readings, arms.stable).counts,
            canary_absolute=canary.absolute,
        )
        decision = judge.observe(observation)
        if guard is not None:
            decision = guard.review(decision)
        yield Judged(decision, canary)


def reading_of(readings: Mapping[str, Reading], arm: str | None) -> Reading:
    """An arm's reading; nothing counted for an arm the provider did not read."""
    found = readings.get(arm) if arm is not None else None
    return found or Reading(Counts(), Absolute(), 0.0)
