"""A judged flag rollout with a business guardrail: the flag's users converting worse
than the others kill it, with the business evidence; a neutral flag is released."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from conveyor.analysis.business import BusinessGuard, BusinessReading, RatioRail
from conveyor.flags.release import FlagReleaseState
from conveyor.flags.store import FlagLedger
from flags.test_release import ledger, release

__all__ = ["ledger"]  # the fixture, shared


class CheckoutsByVariant:
    """Per interval, 200 checkouts on each side; the "on" users convert at `on_rate`."""

    def __init__(self, on_rate: float, off_rate: float = 0.3) -> None:
        self.rates = {"on": on_rate, "off": off_rate}
        self.random = random.Random(3)
        self.arms: list[str] = []

    def start(self, arms: Sequence[str]) -> None:
        self.arms = list(arms)
        assert self.arms == ["on", "off"]

    def read(self) -> BusinessReading:
        increases = {}
        for arm in self.arms:
            orders = sum(self.random.random() < self.rates[arm] for _ in range(200))
            increases[arm] = {"conversion": (orders, 200)}
        return BusinessReading(increases)


def guarded(ledger: FlagLedger, on_rate: float) -> FlagReleaseState:
    rail = RatioRail("conversion", max_drop=0.05)
    judged = replace(
        release(ledger, on_error_rate=0.01, negligible_rate=0.05),
        business=lambda: BusinessGuard([rail], CheckoutsByVariant(on_rate)),
    )
    outcome = judged.run()
    if outcome.state is FlagReleaseState.KILLED:
        assert outcome.reason.startswith("judge: business guardrail conversion: canary")
        assert outcome.decisions[-1].evidence["business"]["rails"][0]["status"] == "breached"
    return outcome.state


def test_a_flag_that_lowers_conversion_is_killed(ledger: FlagLedger) -> None:
    assert guarded(ledger, on_rate=0.15) is FlagReleaseState.KILLED
    assert not ledger.flag("production", "checkout-v2").flag.enabled


def test_a_neutral_flag_is_released(ledger: FlagLedger) -> None:
    assert guarded(ledger, on_rate=0.3) is FlagReleaseState.RELEASED
