"""Burn rates and error budgets on hand-made samples, and the workbook's alert table."""

from __future__ import annotations

import math

import pytest

from conveyor.deploy.model import ReleaseSignals, SignalSample
from conveyor.observe.burn import WORKBOOK_ALERTS, Severity, evaluate, scaled_windows
from conveyor.observe.slo import SloSeries, by_window, series_from_samples, slo_status
from conveyor.spec.slo import Slo, SloKind

AVAILABILITY = Slo(kind=SloKind.AVAILABILITY, objective=99.0)  # a budget of 1 % bad
HOUR, MINUTE, DAY = 3600.0, 60.0, 86400.0


def sample(
    ts: float,
    requests: int,
    errors: int = 0,
    *,
    release: str = "r1",
    fast: int | None = None,
) -> SignalSample:
    """Cumulative counters of one release at `ts`; `fast`: requests within 250 ms."""
    buckets = {} if fast is None else {0.1: fast, 0.25: fast, 1.0: requests, math.inf: requests}
    signals = ReleaseSignals(release, requests, 0, errors, 0, buckets)
    return SignalSample("production", release, ts, signals, None, 100)


def test_the_table_is_the_workbooks() -> None:
    rows = [(r.severity, r.long_window, r.short_window, r.factor) for r in WORKBOOK_ALERTS]
    assert rows == [
        (Severity.PAGE, HOUR, 5 * MINUTE, 14.4),
        (Severity.PAGE, 6 * HOUR, 30 * MINUTE, 6.0),
        (Severity.TICKET, 3 * DAY, 6 * HOUR, 1.0),
    ]
    # 14.4x for an hour spends 2 % of a 30-day budget; 6x for 6 h 5 %; 1x for 3 days 10 %.
    for row in WORKBOOK_ALERTS:
        assert row.factor * row.long_window / (30 * DAY) == pytest.approx(row.budget_spent)


def test_windows_are_divided_by_the_time_scale() -> None:
    assert scaled_windows(1) == [5 * MINUTE, 30 * MINUTE, HOUR, 6 * HOUR, 3 * DAY]
    assert scaled_windows(3600) == [300 / 3600, 0.5, 1.0, 6.0, 72.0]


@pytest.mark.parametrize(
    ("rates", "fired"),
    [
        # both page windows above 14.4: page (the 6x row needs its own windows too)
        ({HOUR: 15.0, 5 * MINUTE: 20.0}, [(Severity.PAGE, HOUR, 5 * MINUTE)]),
        # the long window burnt, but it stopped: the short window resets the alert
        ({HOUR: 15.0, 5 * MINUTE: 0.5}, []),
        # a spike too short to matter: only the short window is high
        ({HOUR: 3.0, 5 * MINUTE: 100.0}, []),
        # exactly the factor is not above it
        ({HOUR: 14.4, 5 * MINUTE: 14.4}, []),
        ({6 * HOUR: 7.0, 30 * MINUTE: 8.0}, [(Severity.PAGE, 6 * HOUR, 30 * MINUTE)]),
        ({3 * DAY: 1.5, 6 * HOUR: 1.2}, [(Severity.TICKET, 3 * DAY, 6 * HOUR)]),
        # no request in a window: it fires nothing
        ({3 * DAY: None, 6 * HOUR: 2.0}, []),
        (
            {HOUR: 20.0, 5 * MINUTE: 20.0, 6 * HOUR: 20.0, 30 * MINUTE: 20.0},
            [(Severity.PAGE, HOUR, 5 * MINUTE), (Severity.PAGE, 6 * HOUR, 30 * MINUTE)],
        ),
    ],
)
def test_evaluate_fires_when_both_windows_burn_above_the_factor(
    rates: dict[float, float | None], fired: list[tuple[Severity, float, float]]
) -> None:
    found = evaluate(rates)
    assert [(f.severity, f.long_window, f.short_window) for f in found] == fired


def test_evaluate_reads_scaled_windows() -> None:
    found = evaluate({1.0: 20.0, 300 / 3600: 30.0}, time_scale=3600)
    assert [(f.severity, f.long_window, f.long_burn_rate, f.short_burn_rate) for f in found] == [
        (Severity.PAGE, 1.0, 20.0, 30.0)
    ]


def test_burn_rate_is_the_error_ratio_over_the_budget() -> None:
    now = 10_000.0
    # 100 req/s; the last 5 minutes 20 % errors, none before.
    samples = [sample(now - 3600 + t, 100 * t) for t in range(0, 3301, 60)]
    samples += [sample(now - 300 + t, 330_000 + 100 * t, 20 * t) for t in range(60, 301, 60)]
    status = slo_status("production", series_from_samples(AVAILABILITY, samples), now)
    windows = by_window(status)

    short = windows[5 * MINUTE]
    assert (short.total, short.bad) == (30_000, 6_000)
    assert short.burn_rate == pytest.approx(20.0)  # 20 % bad against a 1 % budget
    hour = windows[HOUR]
    assert (hour.total, hour.bad) == (360_000, 6_000)
    assert hour.burn_rate == pytest.approx(6_000 / 360_000 / 0.01)  # 1.67
    # The hour burns at 1.7x only: no page; the windows of the ticket (3 days and 6 hours)
    # hold this hour alone, above 1x: a ticket.
    assert [(f.severity, f.long_window) for f in status.firing] == [(Severity.TICKET, 3 * DAY)]
    assert status.budget_remaining == pytest.approx(1 - 6_000 / 360_000 / 0.01)
    assert status.good_percent == pytest.approx(100 * (1 - 6_000 / 360_000))


@pytest.mark.parametrize(
    ("every_nth_bad", "factors"),
    [(5, [14.4, 6.0, 1.0]), (10, [6.0, 1.0]), (50, [1.0]), (200, [])],
)
def test_each_row_fires_above_its_factor(every_nth_bad: int, factors: list[float]) -> None:
    now = 10_000.0
    # An hour at 10 req/s, one in `every_nth_bad` failing: a burn of 100/every_nth_bad.
    samples = [sample(now - 3600 + t, 10 * t, 10 * t // every_nth_bad) for t in range(0, 3601, 30)]
    status = slo_status("production", series_from_samples(AVAILABILITY, samples), now)
    assert [f.factor for f in status.firing] == factors
    for firing in status.firing:
        assert firing.long_burn_rate == pytest.approx(100 / every_nth_bad)
        assert firing.short_burn_rate == pytest.approx(100 / every_nth_bad)


def test_counters_are_summed_over_releases_and_resets_lose_nothing() -> None:
    now = 1_000.0
    samples = [
        sample(now - 300, 1_000, 10, release="old"),
        sample(now - 200, 1_500, 20, release="old"),
        # the router restarted: old's counters start again from zero
        sample(now - 100, 200, 5, release="old"),
        sample(now, 700, 15, release="old"),
        sample(now - 300, 0, 0, release="new"),
        sample(now, 300, 30, release="new"),
    ]
    series = series_from_samples(AVAILABILITY, samples)
    counts = series.counts(now - 300, now)
    # old: +500/+10, then 200/5 after the reset, then +500/+10; new: +300/+30
    assert (counts.total, counts.bad) == (500 + 200 + 500 + 300, 10 + 5 + 10 + 30)


def test_a_window_shorter_than_the_sampling_reads_the_last_interval() -> None:
    samples = [sample(0, 0), sample(10, 100, 50), sample(20, 200, 50)]
    series = series_from_samples(AVAILABILITY, samples)
    assert (series.counts(19.9, 20).total, series.counts(19.9, 20).bad) == (100, 0)
    assert (series.counts(9.9, 10).total, series.counts(9.9, 10).bad) == (100, 50)
    assert series.counts(-5, -1).total == 0  # before any sample: nothing


def test_a_latency_slo_counts_requests_over_the_threshold() -> None:
    slo = Slo(kind=SloKind.LATENCY, threshold=0.25, objective=99.0)
    samples = [sample(0, 0, fast=0), sample(60, 1_000, fast=950)]
    counts = series_from_samples(slo, samples).counts(0, 60)
    assert (counts.total, counts.bad) == (1_000, 50)


def test_a_router_without_a_histogram_gives_a_latency_slo_no_data() -> None:
    slo = Slo(kind=SloKind.LATENCY, threshold=0.25, objective=99.0)
    status = slo_status("production", series_from_samples(slo, [sample(0, 0), sample(60, 99)]), 60)
    assert status.budget_remaining is None and status.firing == []
    assert all(burn.burn_rate is None for burn in status.burn_rates)


def test_no_traffic_leaves_the_budget_untouched_and_fires_nothing() -> None:
    status = slo_status("production", SloSeries(AVAILABILITY), 100.0)
    assert (status.budget_remaining, status.good_percent, status.firing) == (None, None, [])


def test_forgetting_old_samples_keeps_each_windows_counts() -> None:
    samples = [sample(t, 10 * t, t // 10) for t in range(0, 1001, 10)]
    series = series_from_samples(AVAILABILITY, samples)
    before = series.counts(500, 1000)
    series.forget_before(500)
    assert series.counts(500, 1000) == before
    series.add([sample(1010, 10_100, 101)])
    assert series.counts(1000, 1010).total == 100


def test_thinning_old_samples_keeps_recent_windows_exact() -> None:
    samples = [sample(t, 10 * t, t // 7) for t in range(0, 2001)]
    series = series_from_samples(AVAILABILITY, samples)
    recent, from_kept, everything = (
        series.counts(1900, 2000),
        series.counts(1099, 2000),
        series.counts(0, 2000),
    )
    series.thin(before=1800, every=100)
    assert series.counts(1900, 2000) == recent
    # the last sample of each 100 s is kept: a window starting on one counts the same
    assert series.counts(1099, 2000) == from_kept
    # one starting elsewhere starts at most 100 s later (10 req/s: 1000 requests)
    assert 0 < everything.total - series.counts(0, 2000).total <= 1000
    assert len(series._tracks["r1"].times) == 18 + 201  # one per 100 s before 1800
