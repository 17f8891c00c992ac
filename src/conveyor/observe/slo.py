"""Error budget remaining and burn rates per SLO, from the stored golden-signal samples.

The samples hold each release's cumulative counters (deploy/sampler.py). `SloSeries`
folds them, release by release, into running totals of bad and total requests that never
go down: a counter that went down means the router restarted, and the newer reading is
the whole increase (deploy/signals.py `counter_increase`, Prometheus' rule). The count of
a window is then two lookups per release, summed over the environment's releases:

- availability: bad = 5xx answers, total = requests;
- latency: bad = requests not answered within the threshold (the histogram's bucket at
  the threshold), total = requests; a router without a latency histogram counts none.

A window reads from the last sample at or before its start to the last one at its end,
and always spans at least the last two samples, so a window shorter than the sampling
interval (a scaled 5-minute window) reads the latest interval rather than nothing.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from conveyor.deploy.model import ReleaseSignals, SignalSample
from conveyor.deploy.sampler import stored_samples
from conveyor.deploy.signals import counter_increase
from conveyor.observe.burn import Firing, evaluate, scaled_windows
from conveyor.service.project import Project
from conveyor.spec.slo import Slo, SloKind
from conveyor.store.store import Store


@dataclass(frozen=True)
class Counts:
    bad: float = 0.0
    total: float = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.bad + other.bad, self.total + other.total)

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.bad - other.bad, self.total - other.total)

    @property
    def error_ratio(self) -> float | None:
        return self.bad / self.total if self.total > 0 else None


def bad_and_total(slo: Slo, gained: ReleaseSignals) -> Counts | None:
    """What one increase of a release's counters counts for `slo`; None when the
    counters cannot tell (a latency SLO read from a router with no histogram)."""
    if slo.kind is SloKind.AVAILABILITY:
        return Counts(bad=gained.responses_5xx, total=gained.requests)
    assert slo.threshold is not None
    within = gained.latency_buckets.get(slo.threshold)
    if within is None:
        return None
    return Counts(bad=max(gained.requests - within, 0), total=gained.requests)


@dataclass
class _Track:
    """One release's samples as running totals (oldest first)."""

    times: list[float] = field(default_factory=list)
    running: list[Counts] = field(default_factory=list)
    last: ReleaseSignals | None = None


class SloSeries:
    """One environment's samples folded for one SLO; fed in time order, oldest first."""

    def __init__(self, slo: Slo) -> None:
        self.slo = slo
        self._tracks: dict[str, _Track] = {}

    @property
    def newest(self) -> float | None:
        times = [track.times[-1] for track in self._tracks.values() if track.times]
        return max(times) if times else None

    def add(self, samples: Iterable[SignalSample]) -> None:
        for sample in sorted(samples, key=lambda s: s.ts):
            track = self._tracks.setdefault(sample.release_id, _Track())
            if track.times and sample.ts <= track.times[-1]:
                continue  # already read (samples are read again from the newest on)
            running = Counts()
            if track.last is not None:
                gained = bad_and_total(self.slo, counter_increase(track.last, sample.signals))
                running = track.running[-1] + (gained or Counts())
            track.times.append(sample.ts)
            track.running.append(running)
            track.last = sample.signals

    def counts(self, start: float, end: float) -> Counts:
        """Bad and total requests of every release from `start` to `end`."""
        total = Counts()
        for track in self._tracks.values():
            last = bisect.bisect_right(track.times, end) - 1
            if last < 1:
                continue
            first = max(bisect.bisect_right(track.times, start) - 1, 0)
            total += track.running[last] - track.running[min(first, last - 1)]
        return total

    def thin(self, before: float, every: float) -> None:
        """Keep the last sample of each `every` seconds among those older than `before`:
        windows starting there lose that much precision, none loses a count (totals run)."""
        for track in self._tracks.values():
            end = bisect.bisect_left(track.times, before)
            times: list[float] = []
            running: list[Counts] = []
            for ts, total in zip(track.times[:end], track.running[:end], strict=True):
                if times and ts // every == times[-1] // every:
                    times[-1], running[-1] = ts, total
                else:
                    times.append(ts)
                    running.append(total)
            track.times[:end], track.running[:end] = times, running

    def forget_before(self, cutoff: float) -> None:
        """Drop what no window from `cutoff` on reads (each release keeps a baseline)."""
        for release, track in list(self._tracks.items()):
            drop = bisect.bisect_right(track.times, cutoff) - 1
            if drop > 0:
                del track.times[:drop], track.running[:drop]
            if len(track.times) == 1 and track.times[0] < cutoff:
                del self._tracks[release]  # a release no longer sampled


@dataclass(frozen=True)
class WindowBurn:
    window: float  # seconds, scaled
    bad: float
    total: float
    error_ratio: float | None  # None without requests
    burn_rate: float | None


@dataclass(frozen=True)
class SloStatus:
    environment: str
    slo: str
    kind: SloKind
    objective: float  # percent
    threshold: float | None
    window: float  # the rolling window, seconds, scaled
    time_scale: float
    good_percent: float | None  # over the rolling window; None without requests
    budget_remaining: float | None  # 1 untouched, 0 spent, below 0 overspent
    burn_rates: list[WindowBurn]
    firing: list[Firing]


def burn_rates(series: SloSeries, now: float) -> list[WindowBurn]:
    """The burn rate over each scaled window of the workbook's table, ending at `now`."""
    slo = series.slo
    found = []
    for window in scaled_windows(slo.time_scale):
        counts = series.counts(now - window, now)
        ratio = counts.error_ratio
        burn = None if ratio is None else ratio / slo.budget
        found.append(WindowBurn(window, counts.bad, counts.total, ratio, burn))
    return found


def firing_alerts(series: SloSeries, now: float) -> list[Firing]:
    rates = {burn.window: burn.burn_rate for burn in burn_rates(series, now)}
    return evaluate(rates, series.slo.time_scale)


def slo_status(environment: str, series: SloSeries, now: float) -> SloStatus:
    slo = series.slo
    rolling = series.counts(now - slo.scaled_window, now)
    ratio = rolling.error_ratio
    rates = burn_rates(series, now)
    return SloStatus(
        environment=environment,
        slo=slo.name,
        kind=slo.kind,
        objective=slo.objective,
        threshold=slo.threshold,
        window=slo.scaled_window,
        time_scale=slo.time_scale,
        good_percent=None if ratio is None else (1.0 - ratio) * 100.0,
        budget_remaining=None if ratio is None else 1.0 - ratio / slo.budget,
        burn_rates=rates,
        firing=evaluate({burn.window: burn.burn_rate for burn in rates}, slo.time_scale),
    )


def reach(slo: Slo) -> float:
    """How far back an SLO reads: its rolling window or its longest alert window."""
    return max(slo.scaled_window, *scaled_windows(slo.time_scale))


def series_from_samples(slo: Slo, samples: Sequence[SignalSample]) -> SloSeries:
    series = SloSeries(slo)
    series.add(samples)
    return series


def environment_status(
    store: Store, environment: str, slos: Sequence[Slo], now: float, margin: float = 120.0
) -> list[SloStatus]:
    """Every SLO of an environment as of `now`, from the samples in the store; `margin`
    reads that much further back for the sample each window starts from."""
    if not slos:
        return []
    since = now - max(reach(slo) for slo in slos) - margin
    samples = [s for s in stored_samples(store.ledger, environment, since=since) if s.ts <= now]
    return [slo_status(environment, series_from_samples(slo, samples), now) for slo in slos]


def by_window(status: SloStatus) -> Mapping[float, WindowBurn]:
    return {burn.window: burn for burn in status.burn_rates}


def project_slos(project: Project, environment: str | None = None) -> dict[str, list[Slo]]:
    """The SLOs of each environment of conveyor.yml (of `environment` alone, when given:
    it must be declared)."""
    from conveyor.service.environments import environment_spec, environments_of

    environments = environments_of(project)
    if environment is not None:
        return {environment: list(environment_spec(project, environment, environments).slos)}
    return {name: list(spec.slos) for name, spec in environments.items() if spec.slos}


def project_status(
    project: Project, store: Store, environment: str | None = None, now: float | None = None
) -> list[SloStatus]:
    """Every SLO's budget, burn rates and firing alerts, as of `now` (default: now)."""
    at = time.time() if now is None else now
    return [
        status
        for name, slos in project_slos(project, environment).items()
        for status in environment_status(store, name, slos, at)
    ]
