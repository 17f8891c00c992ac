"""The one polling loop of judged rollouts: the provider's readings of the arms, every
interval, as observations the judge decides on."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from conveyor.analysis.model import Absolute, Counts, Verdict
from conveyor.analysis.polling import DEFAULT_LATENCY_THRESHOLD, Arms, judged_windows
from conveyor.analysis.providers.base import Reading
from conveyor.clock import SleptClock
from conveyor.spec.strategy import Analysis


class Scripted:
    """Every read: `per_read` requests per arm, `errors` of them failed on the canary."""

    name = "scripted"

    def __init__(self, per_read: int, errors: int) -> None:
        self.per_read, self.errors = per_read, errors
        self.started: tuple[list[str], float] | None = None

    def start(self, releases: Sequence[str], latency_threshold: float) -> None:
        self.started = (list(releases), latency_threshold)

    def read(self) -> Mapping[str, Reading]:
        assert self.started is not None
        canary, *others = self.started[0]
        readings = {arm: Reading(Counts(self.per_read), Absolute(), 1.0) for arm in others}
        readings[canary] = Reading(Counts(self.per_read, self.errors), Absolute(), 1.0)
        return readings


def settings(**overrides: object) -> Analysis:
    return Analysis.model_validate({"interval": "2s", "min_duration": "4s", **overrides})


def test_the_provider_is_started_on_the_arms_with_the_one_latency_default() -> None:
    provider = Scripted(per_read=100, errors=0)
    windows = judged_windows(
        settings(), provider, Arms("new", "old", "old-baseline"), SleptClock(lambda _s: None)
    )
    next(windows)
    assert provider.started == (["new", "old", "old-baseline"], DEFAULT_LATENCY_THRESHOLD)
    provider = Scripted(per_read=100, errors=0)
    next(
        judged_windows(
            settings(latency_threshold="1s"),
            provider,
            Arms("on", "off"),
            SleptClock(lambda _s: None),
        )
    )
    assert provider.started == (["on", "off"], 1.0)


def test_each_window_is_one_interval_of_the_clock_and_what_the_canary_served() -> None:
    slept: list[float] = []
    windows = judged_windows(
        settings(), Scripted(100, 3), Arms("new", "old"), SleptClock(slept.append)
    )
    first, second = next(windows), next(windows)
    assert slept == [2.0, 2.0]
    assert (first.decision.elapsed, second.decision.elapsed) == (2.0, 4.0)
    assert second.canary.counts == Counts(100, 3)


def test_a_canary_with_many_more_errors_is_judged_a_rollback() -> None:
    windows = judged_windows(
        settings(), Scripted(200, 60), Arms("new", "old"), SleptClock(lambda _s: None)
    )
    verdicts = [judged.decision.verdict for judged in itertools.islice(windows, 20)]
    assert Verdict.ROLLBACK in verdicts
