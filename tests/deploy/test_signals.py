"""Golden signals over windows of hand-made samples: rates, fractions, quantiles, saturation."""

from __future__ import annotations

import math

import pytest

from conveyor.deploy.model import ReleaseSignals, Saturation, SignalSample
from conveyor.deploy.signals import histogram_quantile, overall_rates, rates_series, window_rates

INF = math.inf


def sample(
    ts: float,
    requests: int,
    *,
    responses_4xx: int = 0,
    responses_5xx: int = 0,
    buckets: dict[float, int] | None = None,
    latency_sum: float = 0.0,
    saturation: Saturation | None = None,
    release_id: str = "shop-1",
) -> SignalSample:
    signals = ReleaseSignals(
        release_id=release_id,
        requests=requests,
        responses_4xx=responses_4xx,
        responses_5xx=responses_5xx,
        connect_failures=0,
        latency_buckets=buckets if buckets is not None else {INF: requests},
        latency_sum=latency_sum,
    )
    return SignalSample("staging", release_id, ts, signals, saturation, weight=100)


def test_a_window_gives_exact_request_rate_and_error_fractions() -> None:
    older = sample(100.0, 100, responses_4xx=5, responses_5xx=2)
    newer = sample(110.0, 300, responses_4xx=25, responses_5xx=12)

    rates = window_rates(older, newer)

    assert (rates.release_id, rates.start, rates.end) == ("shop-1", 100.0, 110.0)
    assert rates.requests == 200
    assert rates.requests_per_second == 20.0
    assert rates.rate_4xx == 0.1
    assert rates.rate_5xx == 0.05


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 0.1), (0.95, 0.19), (0.99, 0.198), (0.25, 0.05), (0.75, 0.15), (1.0, 0.2)],
)
def test_quantiles_interpolate_linearly_inside_their_bucket(q: float, expected: float) -> None:
    assert histogram_quantile(q, {0.1: 50, 0.2: 100, INF: 100}) == pytest.approx(expected)


def test_a_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.5, {0.1: 10, 0.2: 20, INF: 100}) == 0.2


def test_a_quantile_skips_empty_buckets_below_it() -> None:
    assert histogram_quantile(0.5, {0.1: 0, 0.2: 0, 0.4: 10, INF: 10}) == pytest.approx(0.3)
    assert histogram_quantile(0.0, {0.1: 0, 0.2: 10, INF: 10}) == pytest.approx(0.1)


def test_a_dip_in_the_buckets_is_evened_out_like_prometheus() -> None:
    # 0.2 read lower than 0.1 (a racing scrape): counted as 50, like 0.1.
    assert histogram_quantile(0.75, {0.1: 50, 0.2: 40, 0.3: 100, INF: 100}) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "buckets",
    [{}, {INF: 10}, {0.1: 5, 0.2: 10}, {0.1: 0, 0.2: 0, INF: 0}],
    ids=["no buckets", "only inf", "no inf", "nothing counted"],
)
def test_a_histogram_that_cannot_answer_gives_none(buckets: dict[float, int]) -> None:
    assert histogram_quantile(0.5, buckets) is None


def test_a_quantile_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        histogram_quantile(1.5, {0.1: 1, INF: 1})


def test_window_quantiles_come_from_the_increase_of_the_buckets() -> None:
    older = sample(0.0, 40, buckets={0.1: 30, 0.2: 40, INF: 40})
    newer = sample(10.0, 140, buckets={0.1: 80, 0.2: 140, INF: 140})

    rates = window_rates(older, newer)

    assert rates.p50 == pytest.approx(0.1)
    assert rates.p95 == pytest.approx(0.19)
    assert rates.p99 == pytest.approx(0.198)


def test_counters_that_went_down_mean_the_router_restarted() -> None:
    older = sample(0.0, 1000, responses_5xx=400, buckets={0.1: 1000, INF: 1000}, latency_sum=50)
    newer = sample(10.0, 50, responses_5xx=5, buckets={0.1: 0, 0.2: 50, INF: 50}, latency_sum=4)

    rates = window_rates(older, newer)

    assert rates.requests == 50
    assert rates.requests_per_second == 5.0
    assert rates.rate_5xx == 0.1
    assert rates.p50 == pytest.approx(0.15)


def test_a_bucket_that_went_down_alone_also_means_a_restart() -> None:
    older = sample(0.0, 10, buckets={0.1: 10, INF: 10})
    newer = sample(10.0, 20, buckets={0.1: 2, INF: 20})

    assert window_rates(older, newer).requests == 20


def test_cpu_percent_is_cpu_seconds_over_the_window() -> None:
    older = sample(0.0, 0, saturation=Saturation(cpu_seconds=10.0, memory_bytes=1, open_files=1))
    newer = sample(
        10.0, 0, saturation=Saturation(cpu_seconds=12.5, memory_bytes=4096, open_files=9)
    )

    rates = window_rates(older, newer)

    assert rates.cpu_percent == pytest.approx(25.0)
    assert (rates.memory_bytes, rates.open_files) == (4096, 9)


def test_cpu_seconds_that_went_down_count_from_zero() -> None:
    older = sample(0.0, 0, saturation=Saturation(cpu_seconds=30.0, memory_bytes=1, open_files=1))
    newer = sample(10.0, 0, saturation=Saturation(cpu_seconds=2.0, memory_bytes=1, open_files=1))

    assert window_rates(older, newer).cpu_percent == pytest.approx(20.0)


def test_without_saturation_on_either_side_there_is_no_cpu_percent() -> None:
    running = Saturation(cpu_seconds=1.0, memory_bytes=2048, open_files=7)

    started = window_rates(sample(0.0, 0), sample(10.0, 0, saturation=running))
    stopped = window_rates(sample(0.0, 0, saturation=running), sample(10.0, 0))

    assert (started.cpu_percent, started.memory_bytes, started.open_files) == (None, 2048, 7)
    assert (stopped.cpu_percent, stopped.memory_bytes, stopped.open_files) == (None, None, None)


def test_an_empty_window_has_zero_rates_and_no_quantiles() -> None:
    older = sample(0.0, 70, responses_5xx=7, buckets={0.1: 70, INF: 70})
    newer = sample(10.0, 70, responses_5xx=7, buckets={0.1: 70, INF: 70})

    rates = window_rates(older, newer)

    assert (rates.requests, rates.requests_per_second) == (0, 0.0)
    assert (rates.rate_4xx, rates.rate_5xx) == (0.0, 0.0)
    assert (rates.p50, rates.p95, rates.p99) == (None, None, None)


def test_samples_of_two_releases_or_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="one release"):
        window_rates(sample(0.0, 0), sample(10.0, 0, release_id="shop-2"))
    with pytest.raises(ValueError, match="must follow"):
        window_rates(sample(10.0, 0), sample(10.0, 0))
    with pytest.raises(ValueError, match="one release"):
        rates_series([sample(0.0, 0), sample(10.0, 0, release_id="shop-2")])


def test_the_series_has_one_window_per_consecutive_pair_in_time_order() -> None:
    samples = [sample(20.0, 60), sample(0.0, 0), sample(10.0, 10)]

    series = rates_series(samples)

    assert [(rates.start, rates.end, rates.requests) for rates in series] == [
        (0.0, 10.0, 10),
        (10.0, 20.0, 50),
    ]
    assert rates_series(samples[:1]) == []


def test_overall_rates_span_first_to_last_and_keep_what_came_before_a_restart() -> None:
    samples = [sample(20.0, 50), sample(0.0, 100), sample(10.0, 300)]  # restarted after 10 s

    rates = overall_rates(samples)

    assert rates is not None
    assert (rates.start, rates.end) == (0.0, 20.0)
    assert rates.requests == 250
    assert rates.requests_per_second == 12.5


def test_overall_rates_need_two_samples() -> None:
    assert overall_rates([]) is None
    assert overall_rates([sample(0.0, 10)]) is None
