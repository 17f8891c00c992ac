"""The simulation harness: synthetic streams, the runner, and the judge's peers."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from conveyor.analysis.model import Counts, Decision, Observation, Verdict
from conveyor.analysis.reference_judges import (
    FlaggerThreshold,
    KayentaMannWhitney,
    OracleSPRT,
    mann_whitney_greater,
)
from conveyor.analysis.simulation import Clustering, Latency, Scenario, poisson, run, stream


def _first(scenario: Scenario, seed: int, count: int) -> list[Observation]:
    return list(itertools.islice(stream(scenario, seed), count))


@pytest.mark.parametrize("mean", [0.3, 4.0, 25.0, 800.0])
def test_poisson_draws_have_the_right_mean_and_variance(mean: float) -> None:
    rng = random.Random(5)
    draws = [poisson(mean, rng) for _ in range(20_000)]
    assert statistics.fmean(draws) == pytest.approx(mean, rel=0.03)
    assert statistics.variance(draws) == pytest.approx(mean, rel=0.06)
    assert min(draws) >= 0


def test_a_stream_is_the_same_for_the_same_seed() -> None:
    scenario = Scenario("s", 100, 0.01)
    assert _first(scenario, 3, 50) == _first(scenario, 3, 50)
    assert _first(scenario, 3, 50) != _first(scenario, 4, 50)
    assert [obs.elapsed for obs in _first(scenario, 3, 3)] == [1.0, 2.0, 3.0]


def test_a_stream_splits_traffic_and_errors_as_the_scenario_says() -> None:
    scenario = Scenario("s", 1000, 0.01, error_multiplier=3.0)
    observations = _first(scenario, 1, 300)

    def total(arm: str, field: str) -> int:
        return sum(getattr(getattr(obs, arm), field) for obs in observations)

    requests = sum(total(arm, "requests") for arm in ("canary", "baseline", "stable"))
    assert total("canary", "requests") / requests == pytest.approx(0.1, rel=0.05)
    assert total("baseline", "requests") / requests == pytest.approx(0.1, rel=0.05)
    assert total("stable", "errors") / total("stable", "requests") == pytest.approx(0.01, rel=0.1)
    assert total("canary", "errors") / total("canary", "requests") == pytest.approx(0.03, rel=0.1)
    assert total("stable", "slow") / total("stable", "requests") == pytest.approx(0.05, rel=0.1)


def test_latency_effects_and_the_slow_threshold() -> None:
    latency = Latency(p50=0.1, p95=0.25)
    assert latency.quantile(0.95) == pytest.approx(0.25)
    assert latency.share_over(0.25) == pytest.approx(0.05)
    scenario = Scenario("s", 100, 0.01, latency_multiplier=1.2)
    errors, slow = scenario.true_effects
    assert errors == 1.0
    assert 1.5 < slow < 2.5  # a fifth slower moves many requests over the old p95


def test_warm_up_bias_ends_after_its_seconds() -> None:
    scenario = Scenario("s", 1000, 0.01, warmup_error_multiplier=5.0, warmup_seconds=100)
    observations = _first(scenario, 2, 200)
    early = sum(obs.baseline.errors for obs in observations[:100])
    late = sum(obs.baseline.errors for obs in observations[100:])
    assert early > 3 * late


class _Never:
    def observe(self, obs: Observation) -> Decision:
        return Decision(Verdict.CONTINUE, "", obs.elapsed)


class _At:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def observe(self, obs: Observation) -> Decision:
        done = obs.elapsed >= self.seconds
        return Decision(Verdict.PROMOTE if done else Verdict.CONTINUE, "at", obs.elapsed)


def test_run_stops_at_the_decision_or_the_maximum() -> None:
    scenario = Scenario("s", 10, 0.01)
    assert run(_Never, scenario, max_seconds=30, seed=1).verdict is Verdict.INCONCLUSIVE
    assert run(_Never, scenario, max_seconds=30, seed=1).seconds == 30
    outcome = run(lambda: _At(12), scenario, max_seconds=30, seed=1)
    assert (outcome.verdict, outcome.seconds) == (Verdict.PROMOTE, 12)


def test_mann_whitney_matches_the_normal_approximation() -> None:
    # U = 9 of 9, mean 4.5, variance 5.25, continuity 0.5: z = 1.746, p = 0.0404.
    assert mann_whitney_greater([4, 5, 6], [1, 2, 3]) == pytest.approx(0.0404, abs=1e-4)
    assert mann_whitney_greater([1, 2, 3], [4, 5, 6]) > 0.9
    assert mann_whitney_greater([0, 0, 0], [0, 0, 0]) == 1.0  # all tied: no evidence
    assert mann_whitney_greater([], [1.0]) == 1.0


def _minutes(canary: Counts, minutes: int) -> list[Observation]:
    other = Counts(60, 0)
    return [Observation(float(s), canary, other, other) for s in range(60, 60 * minutes + 1, 60)]


def test_flagger_rolls_back_after_five_failed_checks_and_promotes_after_ten_passes() -> None:
    flagger = FlaggerThreshold()
    verdicts = [flagger.observe(obs).verdict for obs in _minutes(Counts(60, 2), 5)]
    assert verdicts == [Verdict.CONTINUE] * 4 + [Verdict.ROLLBACK]
    flagger = FlaggerThreshold()
    verdicts = [flagger.observe(obs).verdict for obs in _minutes(Counts(60, 0), 10)]
    assert verdicts[-1] is Verdict.PROMOTE and Verdict.ROLLBACK not in verdicts


def test_flagger_latency_check_counts_slow_minutes() -> None:
    flagger = FlaggerThreshold(max_slow_share=0.1)
    decisions = [flagger.observe(obs) for obs in _minutes(Counts(60, 0, slow=12), 5)]
    assert decisions[-1].verdict is Verdict.ROLLBACK
    assert "slow share" in decisions[-1].reason


def test_kayenta_decides_only_at_the_end_of_its_window() -> None:
    scenario = Scenario("s", 100, 0.01, error_multiplier=3.0)
    outcome = run(lambda: KayentaMannWhitney(window=600), scenario, max_seconds=1800, seed=2)
    assert (outcome.verdict, outcome.seconds) == (Verdict.ROLLBACK, 600)
    quiet = Scenario("s", 100, 0.01)
    outcome = run(lambda: KayentaMannWhitney(window=600), quiet, max_seconds=1800, seed=2)
    assert (outcome.verdict, outcome.seconds) == (Verdict.PROMOTE, 600)


def test_the_oracle_detects_what_it_knows() -> None:
    scenario = Scenario("s", 100, 0.01, error_multiplier=3.0)
    outcome = run(lambda: OracleSPRT(effect=3.0), scenario, max_seconds=1800, seed=1)
    assert outcome.verdict is Verdict.ROLLBACK and outcome.seconds < 300
    slow = Scenario("s", 100, 0.01, latency_multiplier=1.3)
    oracle = OracleSPRT(effect=slow.true_effects[1], latency=True)
    assert run(lambda: oracle, slow, max_seconds=1800, seed=1).verdict is Verdict.ROLLBACK


def test_clustered_errors_come_whole_and_keep_the_error_rate() -> None:
    scenario = Scenario("s", 100, 0.01, clustering=Clustering(size=10))
    observations = _first(scenario, 3, 2000)
    errors = [obs.stable.errors for obs in observations]
    assert {e % 10 for e in errors} == {0}  # every error is part of a burst of ten
    requests = sum(obs.stable.requests for obs in observations)
    assert sum(errors) / requests == pytest.approx(0.01, rel=0.2)


def test_sessions_spread_their_errors_over_their_seconds() -> None:
    scenario = Scenario("s", 100, 0.01, clustering=Clustering(20, 20, share=1.0))
    observations = _first(scenario, 1, 400)
    per_second = [obs.stable.errors for obs in observations]
    assert max(per_second) < 10  # one error a second per session in progress
    assert statistics.fmean(per_second) == pytest.approx(0.8, rel=0.35)


def test_a_gamma_rate_overdisperses_the_counts_but_not_the_mean() -> None:
    scenario = Scenario("s", 1000, 0.01, clustering=Clustering(gamma_shape=0.5))
    per_second = [obs.stable.errors for obs in _first(scenario, 2, 3000)]
    mean = statistics.fmean(per_second)
    assert mean == pytest.approx(8.0, rel=0.1)
    assert statistics.variance(per_second) > 5 * mean  # Poisson: the variance is the mean
