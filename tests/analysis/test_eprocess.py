"""The attribution e-processes: their arithmetic, validity under the null, power, the
confidence sequence, the guardrail's rate test and the events-needed estimate."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator

import pytest

from conveyor.analysis.eprocess import (
    Attribution,
    Grid,
    Mixture,
    Prior,
    RateAbove,
    RateBelow,
    confidence_sequence,
    drift_per_event,
    events_to_reach,
    hidden_rate,
    hidden_ratio,
    nearest,
    no_harm_mixture,
    regression_mixture,
    tolerance_index,
    two_sided_mixture,
)
from conveyor.analysis.simulation import poisson

CANARY_SHARE = 0.1


def _intervals(
    theta: float, seed: int, count: int, reference_rate: float = 1.0
) -> Iterator[tuple[int, int, int, int]]:
    """Events per 1 s interval: reference ~ Poisson(rate), canary ~ Poisson(theta x its share)."""
    rng = random.Random(seed)
    canary_requests, reference_requests = 10, 90
    for _ in range(count):
        canary = poisson(reference_rate * CANARY_SHARE * theta, rng)
        reference = poisson(reference_rate * (1 - CANARY_SHARE), rng)
        yield canary, canary_requests, reference, reference_requests


def _crosses(
    theta: float,
    seed: int,
    level: float,
    *,
    mixture_of: Callable[[Grid], Mixture] = regression_mixture,
    rate: float = 1.0,
) -> bool:
    grid = Grid(1.5)
    attribution, mixture = Attribution(grid), mixture_of(grid)
    for interval in _intervals(theta, seed, 400, rate):
        attribution.update(*interval)
        if mixture.log_e(attribution) >= math.log(1 / level):
            return True
    return False


@pytest.mark.parametrize("min_effect", [1.05, 1.5, 3.0, 25.0])
def test_grid_is_even_in_log_and_holds_one_and_min_effect(min_effect: float) -> None:
    grid = Grid(min_effect)
    assert grid.thetas[grid.unity] == 1.0
    assert grid.thetas[grid.min_effect] == min_effect
    steps = {round(b - a, 12) for a, b in itertools.pairwise(grid.log_thetas)}
    assert len(steps) == 1 and 0.04 < steps.pop() < 0.11
    assert grid.thetas[0] < 0.05 and grid.thetas[-1] > 20


def test_an_interval_adds_the_attribution_log_likelihood_ratio() -> None:
    grid = Grid(1.5)
    attribution = Attribution(grid)
    attribution.update(3, 10, 5, 90)
    p = 10 / 100
    for theta, value in zip(grid.thetas, attribution.log_lr, strict=True):
        assert value == pytest.approx(3 * math.log(theta) - 8 * math.log(1 + p * (theta - 1)))
    assert attribution.rate_ratio() == pytest.approx((3 / 10) / (5 / 90))


def test_intervals_without_information_change_nothing() -> None:
    attribution = Attribution(Grid(1.5))
    attribution.update(0, 10, 0, 90)  # no events
    attribution.update(2, 10, 0, 0)  # no reference traffic
    attribution.update(0, 0, 4, 90)  # no canary traffic
    assert attribution.version == 0
    assert set(attribution.log_lr) == {0.0}
    assert attribution.canary_requests == 20 and attribution.reference_events == 4


def test_rollback_mixture_keeps_its_level_under_the_null() -> None:
    level = 0.05
    rejected = sum(_crosses(1.0, seed, level) for seed in range(300))
    # Ville: at most `level`; the tolerance is three binomial standard deviations.
    assert rejected / 300 <= level + 3 * math.sqrt(level * (1 - level) / 300)


def test_rollback_mixture_keeps_its_level_when_the_canary_is_better() -> None:
    assert sum(_crosses(0.7, seed, 0.05) for seed in range(100)) <= 5


@pytest.mark.parametrize("prior", list(Prior))
def test_rollback_mixture_detects_a_tripled_rate(prior: Prior) -> None:
    def mixture_of(grid: Grid) -> Mixture:
        return regression_mixture(grid, prior)

    detected = sum(_crosses(3.0, seed, 0.01, mixture_of=mixture_of) for seed in range(30))
    assert detected >= 27


def test_no_harm_mixture_keeps_its_level_at_the_smallest_harm() -> None:
    level = 0.05
    rejected = sum(_crosses(1.5, seed, level, mixture_of=no_harm_mixture) for seed in range(300))
    assert rejected / 300 <= level + 3 * math.sqrt(level * (1 - level) / 300)


def test_no_harm_mixture_gathers_evidence_for_an_unchanged_canary() -> None:
    promoted = sum(
        _crosses(1.0, seed, 0.05, mixture_of=no_harm_mixture, rate=3.0) for seed in range(30)
    )
    assert promoted >= 25


def test_two_sided_mixture_sees_both_directions() -> None:
    assert _crosses(0.2, 1, 0.01, mixture_of=two_sided_mixture)
    assert _crosses(4.0, 1, 0.01, mixture_of=two_sided_mixture)


def test_confidence_sequence_agrees_with_the_rollback_test() -> None:
    grid = Grid(1.5)
    mixture = regression_mixture(grid)
    for seed in range(20):
        attribution = Attribution(grid)
        for interval in _intervals(2.0, seed, 300):
            attribution.update(*interval)
            rejects = mixture.log_e(attribution) >= math.log(1 / 0.01)
            assert (confidence_sequence(attribution, mixture, 0.01).low >= 1.0) == rejects


def test_confidence_sequence_covers_the_effect_and_excludes_one() -> None:
    grid = Grid(1.5)
    covered = 0
    for seed in range(40):
        attribution = Attribution(grid)
        for interval in _intervals(3.0, seed, 400):
            attribution.update(*interval)
        bounds = confidence_sequence(attribution, regression_mixture(grid), 0.05)
        assert bounds.low > 1.0
        assert bounds.high is not None
        covered += bounds.low <= 3.0 <= bounds.high
    assert covered >= 38


def test_confidence_sequence_without_data_is_the_whole_grid() -> None:
    grid = Grid(1.5)
    bounds = confidence_sequence(Attribution(grid), regression_mixture(grid), 0.05)
    assert bounds.low == 0.0 and bounds.high is None


def test_rate_above_a_limit() -> None:
    rail = RateAbove(0.05)
    assert rail.log_e(1, 100) < 0  # 1 % against a 5 % limit: evidence for the limit
    assert rail.log_e(30, 100) > math.log(1000)  # 30 %: far over it
    assert RateAbove(0.0).log_e(1, 100) == math.inf
    assert RateAbove(0.0).log_e(0, 100) == 0.0
    assert RateAbove(1.0).log_e(100, 100) == 0.0


def test_drift_per_event_is_the_divergence_under_the_alternative() -> None:
    p, theta = 0.1, 2.0
    q = theta * p / (theta * p + 1 - p)
    divergence = q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))
    assert drift_per_event(p, theta, theta, 1.0) == pytest.approx(divergence)
    assert drift_per_event(p, 1.0, theta, 1.0) < 0  # under the null it shrinks


def test_events_to_reach() -> None:
    drift = drift_per_event(0.1, 2.0, 2.0, 1.0)
    assert events_to_reach(0.1, 2.0, 2.0, 1.0, 3.0) == math.ceil(3.0 / drift)
    assert events_to_reach(0.1, 2.0, 2.0, 1.0, 0.0) == 0
    assert events_to_reach(0.1, 1.0, 2.0, 1.0, 3.0) == -1


def test_nearest_grid_point() -> None:
    grid = Grid(1.5)
    assert grid.thetas[nearest(grid, 1.5)] == 1.5
    assert grid.thetas[nearest(grid, 1000.0)] == grid.thetas[-1]
    assert nearest(grid, 0.5, among=range(grid.unity, len(grid.thetas))) == grid.unity


# -- the promotion rule's bounds ---------------------------------------------------------


def test_a_tolerated_ratio_off_the_grid_is_tested_at_the_point_below_it() -> None:
    grid = Grid(1.5)
    index = tolerance_index(grid, 2.0)
    assert grid.thetas[index] <= 2.0 < grid.thetas[index + 1]
    assert tolerance_index(grid, 1.5) == grid.min_effect  # on the grid: itself


def test_the_ratio_route_keeps_its_level_at_the_tolerated_ratio() -> None:
    level = 0.05

    def at_two(grid: Grid) -> Mixture:
        return no_harm_mixture(grid, tolerance_index(grid, 2.0))

    rejected = sum(_crosses(2.0, seed, level, mixture_of=at_two) for seed in range(300))
    assert rejected / 300 <= level + 3 * math.sqrt(level * (1 - level) / 300)


def test_the_hidden_ratio_is_where_the_no_harm_tests_start_rejecting() -> None:
    grid = Grid(1.5)
    attribution = Attribution(grid)
    assert hidden_ratio(attribution, 0.05) is None  # no events: unbounded
    cut = math.log(1 / 0.05)
    for interval in _intervals(1.0, 3, 300, reference_rate=3.0):
        attribution.update(*interval)
        bound = hidden_ratio(attribution, 0.05)
        if bound is None:
            continue
        index = grid.thetas.index(bound)
        assert no_harm_mixture(grid, index).log_e(attribution) >= cut
        if index - 1 > grid.unity:
            assert no_harm_mixture(grid, index - 1).log_e(attribution) < cut
    assert bound is not None and bound <= 1.5  # 900 unchanged events bound it tightly


def test_rate_below_keeps_its_level_at_the_tolerated_rate() -> None:
    level, tolerance, crossed = 0.05, 0.01, 0
    rail = RateBelow(tolerance)
    for seed in range(300):
        rng = random.Random(seed)
        events = requests = 0
        for _ in range(200):  # intervals of 20 requests at exactly the tolerated rate
            events += sum(rng.random() < tolerance for _ in range(20))
            requests += 20
            if rail.log_e(events, requests) >= math.log(1 / level):
                crossed += 1
                break
    assert crossed / 300 <= level + 3 * math.sqrt(level * (1 - level) / 300)


def test_a_quiet_canary_bounds_its_own_rate() -> None:
    # 0.7 (1 - 0.01)^-n alone reaches 20 at n = 334; the small alternatives help a little.
    rail = RateBelow(0.01)
    assert rail.log_e(0, 317) < math.log(20) <= rail.log_e(0, 318)
    assert rail.log_e(1, 318) < rail.log_e(0, 318)
    found = [hidden_rate(0, n, 0.05) for n in (100, 1000, 10000)]
    bounds = [bound for bound in found if bound is not None]
    assert len(bounds) == len(found)
    assert bounds[0] > bounds[1] > bounds[2]
    at_318 = hidden_rate(0, 318, 0.05)
    assert at_318 is not None and at_318 <= 0.01 * 1.1  # a 10 % grid
