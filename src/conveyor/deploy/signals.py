"""Golden signals over time: rates, error fractions, latency quantiles and saturation.

A `SignalSample` holds cumulative counters; what a rollout judges is what happened
*between* two samples. Counters going down mean the router (or a replica) restarted and
counted from zero again, so the newer reading is the whole window's increase - the
counter-reset rule of Prometheus' `rate()`. Quantiles are estimated from the increase of
the cumulative latency buckets exactly as Prometheus' `histogram_quantile()` does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from conveyor.deploy.model import ReleaseSignals, Saturation, SignalRates, SignalSample

QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Increase:
    """What the cumulative counters of one release gained over a window."""

    requests: int = 0
    responses_4xx: int = 0
    responses_5xx: int = 0
    latency_buckets: dict[float, int] = field(default_factory=dict)
    cpu_seconds: float | None = 0.0  # None when the CPU use of part of the window is unknown
    log_errors: int = 0

    def __add__(self, other: Increase) -> Increase:
        bounds = self.latency_buckets.keys() | other.latency_buckets.keys()
        cpu = (
            None
            if self.cpu_seconds is None or other.cpu_seconds is None
            else self.cpu_seconds + other.cpu_seconds
        )
        return Increase(
            requests=self.requests + other.requests,
            responses_4xx=self.responses_4xx + other.responses_4xx,
            responses_5xx=self.responses_5xx + other.responses_5xx,
            latency_buckets={
                bound: self.latency_buckets.get(bound, 0) + other.latency_buckets.get(bound, 0)
                for bound in bounds
            },
            cpu_seconds=cpu,
            log_errors=self.log_errors + other.log_errors,
        )


def histogram_quantile(q: float, buckets: Mapping[float, int]) -> float | None:
    """The q-quantile (0..1) of a cumulative histogram {upper bound -> count at or under it}.

    Linear interpolation inside the bucket the rank falls in, the lowest bucket starting at
    0; a rank in the +Inf bucket gives the highest finite bound. None when nothing was
    counted or the histogram cannot answer (no +Inf bucket, no finite bucket).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    bounds = sorted(buckets)
    if len(bounds) < 2 or bounds[-1] != math.inf:
        return None
    # Buckets scraped at slightly different moments can dip; Prometheus evens them out too.
    counts = list(itertools.accumulate((buckets[bound] for bound in bounds), max))
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, count in enumerate(counts) if count >= rank and count > 0)
    if bounds[index] == math.inf:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    lower = bounds[index - 1] if index > 0 else 0.0
    below = counts[index - 1] if index > 0 else 0
    share = (rank - below) / (counts[index] - below)
    return lower + (bounds[index] - lower) * share


def window_rates(older: SignalSample, newer: SignalSample) -> SignalRates:
    """The golden signals of one release between two of its samples."""
    return _rates(older, newer, _increase(older, newer))


def rates_series(samples: Sequence[SignalSample]) -> list[SignalRates]:
    """The golden signals of each window between consecutive samples of one release."""
    ordered = _in_order(samples)
    return [window_rates(older, newer) for older, newer in itertools.pairwise(ordered)]


def overall_rates(samples: Sequence[SignalSample]) -> SignalRates | None:
    """The golden signals from the first to the last sample of one release; None with
    fewer than two. Increases are summed window by window, so a restart in the middle
    loses nothing counted before it."""
    ordered = _in_order(samples)
    if len(ordered) < 2:
        return None
    total = sum(
        (_increase(older, newer) for older, newer in itertools.pairwise(ordered)),
        start=Increase(),
    )
    return _rates(ordered[0], ordered[-1], total)


def _in_order(samples: Sequence[SignalSample]) -> list[SignalSample]:
    releases = {(sample.environment, sample.release_id) for sample in samples}
    if len(releases) > 1:
        raise ValueError(f"samples of one release expected, got {sorted(releases)}")
    return sorted(samples, key=lambda sample: sample.ts)


def _increase(older: SignalSample, newer: SignalSample) -> Increase:
    if (older.environment, older.release_id) != (newer.environment, newer.release_id):
        raise ValueError(
            f"samples of one release expected, got {older.release_id!r} in "
            f"{older.environment!r} and {newer.release_id!r} in {newer.environment!r}"
        )
    if newer.ts <= older.ts:
        raise ValueError(f"the newer sample ({newer.ts}) must follow the older ({older.ts})")
    gained = counter_increase(older.signals, newer.signals)
    return Increase(
        requests=gained.requests,
        responses_4xx=gained.responses_4xx,
        responses_5xx=gained.responses_5xx,
        latency_buckets=gained.latency_buckets,
        cpu_seconds=_cpu_increase(older.saturation, newer.saturation),
        log_errors=gained.log_errors,
    )


def counter_increase(before: ReleaseSignals, after: ReleaseSignals) -> ReleaseSignals:
    """What the cumulative counters gained from `before` to `after`. A router restart
    (any counter went down) makes `after` the whole increase, as Prometheus' rate() does.
    The log error counter has a reader of its own, so it restarts on its own."""
    log_errors = after.log_errors - before.log_errors
    if log_errors < 0:
        log_errors = after.log_errors
    if router_restarted(before, after):
        before = ReleaseSignals(after.release_id, 0, 0, 0, 0)
    return ReleaseSignals(
        release_id=after.release_id,
        requests=after.requests - before.requests,
        responses_4xx=after.responses_4xx - before.responses_4xx,
        responses_5xx=after.responses_5xx - before.responses_5xx,
        connect_failures=after.connect_failures - before.connect_failures,
        latency_buckets={
            bound: count - before.latency_buckets.get(bound, 0)
            for bound, count in after.latency_buckets.items()
        },
        latency_sum=after.latency_sum - before.latency_sum,
        log_errors=log_errors,
    )


def router_restarted(before: ReleaseSignals, after: ReleaseSignals) -> bool:
    """Whether any counter went down: the router's counters all restart together."""
    totals_went_down = (
        after.requests < before.requests
        or after.responses_4xx < before.responses_4xx
        or after.responses_5xx < before.responses_5xx
        or after.connect_failures < before.connect_failures
        or after.latency_sum < before.latency_sum
    )
    return totals_went_down or any(
        after.latency_buckets.get(bound, 0) < count
        for bound, count in before.latency_buckets.items()
    )


def _cpu_increase(before: Saturation | None, after: Saturation | None) -> float | None:
    if before is None or after is None:
        return None
    if after.cpu_seconds < before.cpu_seconds:  # replicas restarted: counted from zero again
        return after.cpu_seconds
    return after.cpu_seconds - before.cpu_seconds


def _rates(first: SignalSample, last: SignalSample, increase: Increase) -> SignalRates:
    seconds = last.ts - first.ts
    requests = increase.requests
    p50, p95, p99 = (
        histogram_quantile(q, increase.latency_buckets) if requests else None for q in QUANTILES
    )
    saturation = last.saturation
    return SignalRates(
        release_id=last.release_id,
        start=first.ts,
        end=last.ts,
        requests=requests,
        requests_per_second=requests / seconds,
        rate_4xx=increase.responses_4xx / requests if requests else 0.0,
        rate_5xx=increase.responses_5xx / requests if requests else 0.0,
        p50=p50,
        p95=p95,
        p99=p99,
        cpu_percent=None if increase.cpu_seconds is None else increase.cpu_seconds / seconds * 100,
        memory_bytes=saturation.memory_bytes if saturation else None,
        open_files=saturation.open_files if saturation else None,
        log_errors=increase.log_errors,
        log_errors_per_second=increase.log_errors / seconds,
        log_error_share=increase.log_errors / requests if requests else None,
    )
