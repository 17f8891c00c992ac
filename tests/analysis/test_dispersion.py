"""The cluster-size estimate that tempers each interval's evidence, and the tempered
e-processes it feeds."""

from __future__ import annotations

import math

import pytest

from conveyor.analysis.dispersion import PRIOR_CLUSTERS, READY_WINDOWS, Dispersion
from conveyor.analysis.eprocess import Attribution, Grid, RateAbove, RateAboveProcess
from conveyor.analysis.simulation import Clustering, Scenario, stream


def _fed(scenario: Scenario, seed: int, seconds: int) -> tuple[Dispersion, list[float]]:
    """The estimate after `seconds` of the stream, and every interval's factor."""
    dispersion, factors = Dispersion(), []
    for obs in stream(scenario, seed):
        arms = (obs.canary, obs.baseline, obs.stable)
        dispersion.update(sum(a.errors for a in arms), sum(a.requests for a in arms))
        factors.append(dispersion.factor)
        if obs.elapsed >= seconds:
            return dispersion, factors
    raise AssertionError("unreachable: the stream is endless")


def test_independent_errors_keep_almost_every_interval_whole() -> None:
    scenario = Scenario("poisson", 100, 0.01)
    for seed in range(5):
        dispersion, factors = _fed(scenario, seed, 600)
        assert dispersion.clusters == 1.0
        # Clusters of a few errors are assumed for the first minute, until they could
        # have shown; after it, a chance spike now and then counts as one cluster.
        assert set(factors[: READY_WINDOWS - 1]) >= {PRIOR_CLUSTERS}
        assert sum(f > 1.0 for f in factors[READY_WINDOWS:]) <= 3


@pytest.mark.parametrize(
    ("clustering", "low"),
    [
        (Clustering(size=10), 5.0),  # retry bursts of 10
        (Clustering(20, 20, 0.5), 2.0),  # sessions: one error a second for 20 s
        (Clustering(gamma_shape=0.1), 3.0),  # a per-second rate drawn from a gamma
    ],
)
def test_clustered_errors_are_found_within_minutes(clustering: Clustering, low: float) -> None:
    scenario = Scenario("clustered", 100, 0.01, clustering=clustering)
    found = sum(_fed(scenario, seed, 240)[0].clusters >= low for seed in range(6))
    assert found >= 5  # long sessions take the longest to show


def test_a_spike_weighs_as_one_event() -> None:
    dispersion = Dispersion()
    assert dispersion.update(12, 100) == pytest.approx(1 / 12)  # no history: maybe one
    for _ in range(READY_WINDOWS + 10):
        assert dispersion.update(1, 100) is None  # tempered by the cluster size found
    assert dispersion.update(40, 100) == pytest.approx(1 / 40)
    assert dispersion.factor == 40


def test_raising_the_cluster_size_tempers_the_past_too() -> None:
    grid = Grid(1.5)
    attribution = Attribution(grid)
    attribution.update(3, 10, 5, 90)
    before = list(attribution.log_lr)
    attribution.temper(4.0)
    assert attribution.log_lr == pytest.approx([x / 4 for x in before])
    attribution.update(2, 10, 0, 90, weight=0.5)  # a spike keeps its own weight
    increment = [2 * math.log(t) - 2 * math.log1p(0.1 * (t - 1)) for t in grid.thetas]
    expected = [x / 4 + 0.5 * y for x, y in zip(before, increment, strict=True)]
    assert attribution.log_lr == pytest.approx(expected)


def test_a_weight_tempers_the_interval_likelihood_ratio() -> None:
    grid = Grid(1.5)
    whole, tempered = Attribution(grid), Attribution(grid)
    whole.update(3, 10, 5, 90)
    tempered.update(3, 10, 5, 90, weight=0.25)
    for full, part in zip(whole.log_lr, tempered.log_lr, strict=True):
        assert part == pytest.approx(full / 4)
    assert tempered.canary_events == 3  # the counts stay as they were


def test_the_guardrail_process_with_whole_intervals_is_the_rate_test_of_the_totals() -> None:
    rail = RateAbove(0.05)
    process = RateAboveProcess(rail)
    for events, requests in [(1, 100), (9, 100), (0, 50)]:
        process.update(events, requests)
    assert process.log_e() == pytest.approx(rail.log_e(10, 250))
    # 40 errors at once: one cluster, not enough to cross where the whole count would.
    process.update(40, 100, weight=1 / 40)
    assert process.log_e() < 0.0 < math.log(2000) < rail.log_e(50, 350)
    zero = RateAboveProcess(RateAbove(0.0))
    zero.update(0, 10)
    assert zero.log_e() == 0.0
    zero.update(1, 10)
    assert zero.log_e() == math.inf
