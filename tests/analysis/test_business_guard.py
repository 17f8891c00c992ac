"""The business guardrail: the proportion confidence sequence's coverage on simulated
data, and the guard's decisions (rollback on a drop, never a pass without data)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest

from conveyor.analysis.business import (
    BusinessGuard,
    BusinessReading,
    RailStatus,
    RatioRail,
    judge_rail,
)
from conveyor.analysis.eprocess import compare_proportions, proportion_interval, proportion_log_e
from conveyor.analysis.model import Decision, Verdict

LEVEL = 0.05


def test_the_proportion_sequence_covers_the_true_rate_whenever_one_looks() -> None:
    """Seeded: 200 runs of 1,000 Bernoulli trials, checked after every trial; a run
    misses when the e-value of the true rate ever crosses 1/level (Ville: <= level)."""
    rng = random.Random(7)
    cut = math.log(1 / LEVEL)
    for rate in (0.05, 0.3):
        missed = 0
        for _ in range(200):
            successes = 0
            for trials in range(1, 1001):
                successes += rng.random() < rate
                if proportion_log_e(successes, trials, rate) >= cut:
                    missed += 1
                    break
        assert missed / 200 <= LEVEL, (rate, missed)


def test_the_interval_is_the_rates_the_e_value_keeps() -> None:
    interval = proportion_interval(30, 100, LEVEL)
    assert interval.high is not None
    assert 0.15 < interval.low < 0.3 < interval.high < 0.47
    cut = math.log(1 / LEVEL)
    assert (
        proportion_log_e(30, 100, interval.low + 1e-6)
        < cut
        <= proportion_log_e(30, 100, interval.low - 1e-3)
    )
    assert proportion_interval(0, 0, LEVEL) == proportion_interval(0, 0, 0.5)  # [0, 1]
    assert proportion_interval(0, 50, LEVEL).low == 0.0
    assert proportion_interval(50, 50, LEVEL).high == 1.0
    narrower = proportion_interval(3000, 10000, LEVEL)
    assert narrower.high is not None and narrower.high - narrower.low < 0.05


def test_the_comparison_of_equal_rates_rarely_excludes_one() -> None:
    """Seeded: two arms at the same rate, compared every interval: the ratio's sequence
    excludes 1 in at most `level` of the runs."""
    rng = random.Random(11)
    excluded = 0
    runs = 40
    for _ in range(runs):
        arm, reference = [0, 0], [0, 0]
        for _ in range(40):
            for side, trials in ((arm, 25), (reference, 50)):
                side[0] += sum(rng.random() < 0.4 for _ in range(trials))
                side[1] += trials
            ratio = compare_proportions((arm[0], arm[1]), (reference[0], reference[1]), LEVEL).ratio
            if ratio.low > 1 or (ratio.high is not None and ratio.high < 1):
                excluded += 1
                break
    assert excluded / runs <= LEVEL


class Scripted:
    """A source that replays per-interval increases of the ratio `conversion`."""

    def __init__(
        self,
        intervals: Sequence[tuple[tuple[int, int], tuple[int, int]]],
        problems: Sequence[str] = (),
    ) -> None:
        self.intervals = list(intervals)
        self.problems = tuple(problems)
        self.arms: list[str] = []

    def start(self, arms: Sequence[str]) -> None:
        self.arms = list(arms)

    def read(self) -> BusinessReading:
        canary, reference = self.intervals.pop(0) if self.intervals else ((0, 0), (0, 0))
        increases = {self.arms[0]: {"conversion": canary}, self.arms[1]: {"conversion": reference}}
        return BusinessReading(increases, self.problems)


RAIL = RatioRail("conversion", max_drop=0.05, min_count=20)


def run_guard(
    source: Scripted, verdict: Verdict, steps: int, max_duration: float = 100.0
) -> list[Decision]:
    guard = BusinessGuard([RAIL], source)
    guard.start("canary", "baseline", max_duration)
    return [
        guard.review(Decision(verdict, "judge", float(i + 1), {"alpha": 0.05}))
        for i in range(steps)
    ]


def test_a_canary_that_lowers_conversion_is_rolled_back_with_the_evidence() -> None:
    decisions = run_guard(Scripted([((5, 50), (25, 50))] * 10), Verdict.CONTINUE, 10)
    rollback = next(d for d in decisions if d.verdict is Verdict.ROLLBACK)
    assert "business guardrail conversion" in rollback.reason
    assert "a drop beyond the 5% tolerated" in rollback.reason
    rail = rollback.evidence["business"]["rails"][0]
    assert rail["status"] == "breached"
    assert rail["ratio_interval"]["high"] < 0.95
    assert rollback.evidence["alpha"] == 0.05  # the judge's own evidence is kept


def test_a_neutral_canary_keeps_the_judges_promotion() -> None:
    decisions = run_guard(Scripted([((20, 50), (20, 50))] * 5), Verdict.PROMOTE, 5)
    assert all(d.verdict is Verdict.PROMOTE for d in decisions)
    assert decisions[-1].evidence["business"]["rails"][0]["status"] == "watching"


def test_no_data_is_never_a_pass() -> None:
    decisions = run_guard(Scripted([((1, 5), (2, 5))] * 3), Verdict.PROMOTE, 6, max_duration=4.0)
    assert [d.verdict for d in decisions] == [Verdict.CONTINUE] * 3 + [Verdict.INCONCLUSIVE] * 3
    assert "no data yet (canary 15, reference 15 of the 20" in decisions[-1].reason


def test_more_orders_than_checkouts_is_not_judged_as_a_rate() -> None:
    status, compared = judge_rail(RAIL, (60, 50), (20, 50))
    assert (status, compared) == (RailStatus.INCONSISTENT, None)
    decisions = run_guard(Scripted([((60, 50), (20, 50))]), Verdict.PROMOTE, 1)
    assert decisions[0].verdict is Verdict.CONTINUE
    assert "not judged" in decisions[0].reason


def test_source_problems_are_recorded_with_the_decision() -> None:
    source = Scripted([((20, 50), (20, 50))], problems=["r replica a:1, orders: did not answer"])
    decision = run_guard(source, Verdict.CONTINUE, 1)[0]
    assert decision.evidence["business"]["problems"] == ["r replica a:1, orders: did not answer"]


@pytest.mark.parametrize(
    ("canary", "status"), [((6000, 10000), RailStatus.HOLDS), ((300, 1000), RailStatus.BREACHED)]
)
def test_a_rail_holds_or_breaks_on_evidence(canary: tuple[int, int], status: RailStatus) -> None:
    assert judge_rail(RAIL, canary, (5000, 10000))[0] is status
