"""The `router` metrics provider: the environment's router's own golden signals.

Each reading samples the router's cumulative counters per release (`Router.signals()`)
and the saturation of the release's replicas (`Runtime.saturation()`), and counts what
changed since the previous reading:

- requests: answered requests plus failed connection attempts. A connection the router
  could not open is a failed request of the release it tried, even when the router then
  retried it elsewhere, so both figures count it and errors never exceed requests;
- errors: 5xx answers plus failed connection attempts;
- slow: answered requests over the latency threshold, read from the latency histogram;
- log_errors: error-level lines the release's replicas logged (`log_errors.ErrorCounter`,
  for a runtime that keeps its replicas' logs); the judge reads them only when the
  analysis asks for it (`log_errors: true`).

Counters going down mean the router restarted and counted from zero again: the newer
reading is then the whole increase, as in Prometheus' `increase()`.

It reads the data plane, so it lives in deploy/; the provider registry in analysis/
names it by its module path, and analysis/ imports nothing from here.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping, Sequence

from conveyor.analysis.model import Absolute, Counts
from conveyor.analysis.providers.base import ProviderSite, Reading
from conveyor.deploy.log_errors import error_counter
from conveyor.deploy.model import Saturation, SignalSample
from conveyor.deploy.routers.base import Router
from conveyor.deploy.routers.proxy import LATENCY_BUCKETS
from conveyor.deploy.runtimes.base import Runtime
from conveyor.deploy.sampler import (
    DataPlane,
    LogErrorsOf,
    SampleSink,
    read_samples,
    saturation_or_none,
)
from conveyor.deploy.signals import counter_increase, histogram_quantile
from conveyor.errors import ConveyorError


class RouterProvider:
    """Counts per release from the router's counters and the runtime's saturation.

    The latency threshold is rounded up to a bound of the router's latency histogram
    (`latency_buckets`, by default the builtin router's): a request is slow when it took
    longer than `latency_bound`. A router without a latency histogram (HAProxy's
    exporter) counts no slow requests and no p99.

    `on_sample`, when given, receives every sample taken (one per started release), so
    the caller can store the time series.
    """

    name = "router"

    def __init__(
        self,
        router: Router,
        runtime: Runtime,
        *,
        environment: str = "",
        on_sample: SampleSink | None = None,
        latency_buckets: Sequence[float] = LATENCY_BUCKETS,
        clock: Callable[[], float] = time.time,
        log_errors_of: LogErrorsOf | None = None,
    ) -> None:
        self.router = router
        self.runtime = runtime
        self.environment = environment
        self._on_sample = on_sample
        self._bucket_bounds = sorted(latency_buckets)
        self._clock = clock
        self._latency_bound: float | None = None
        self._previous: dict[str, SignalSample] = {}
        self._log_errors_of = log_errors_of or error_counter(runtime)

    @property
    def latency_bound(self) -> float:
        """The histogram bound (seconds) the threshold was rounded up to by `start`."""
        if self._latency_bound is None:
            raise RuntimeError("RouterProvider.start() has not been called")
        return self._latency_bound

    def start(self, releases: Sequence[str], latency_threshold: float) -> None:
        self._latency_bound = self._round_up_to_bucket(latency_threshold)
        self._previous = {sample.release_id: sample for sample in self._sample(releases)}

    def read(self) -> Mapping[str, Reading]:
        if self._latency_bound is None:
            raise RuntimeError("RouterProvider.start() has not been called")
        samples = self._sample(list(self._previous))
        readings = {
            sample.release_id: self._reading(self._previous[sample.release_id], sample)
            for sample in samples
        }
        self._previous = {sample.release_id: sample for sample in samples}
        return readings

    def _round_up_to_bucket(self, threshold: float) -> float:
        index = bisect.bisect_left(self._bucket_bounds, threshold)
        if threshold <= 0 or index == len(self._bucket_bounds):
            largest = self._bucket_bounds[-1] if self._bucket_bounds else None
            raise ConveyorError(
                f"latency threshold {threshold}s is outside the router's latency histogram "
                f"(0 to {largest}s)",
                hint="choose a latency_threshold within the router's latency buckets",
            )
        return self._bucket_bounds[index]

    def _sample(self, releases: Sequence[str]) -> list[SignalSample]:
        samples = read_samples(
            self.environment,
            self.router,
            lambda release: saturation_or_none(self.runtime, release),
            releases,
            now=self._clock(),
            log_errors_of=self._log_errors_of,
        )
        if self._on_sample is not None:
            self._on_sample(samples)
        return samples

    def _reading(self, older: SignalSample, newer: SignalSample) -> Reading:
        delta = counter_increase(older.signals, newer.signals)
        seconds = newer.ts - older.ts
        within_bound = delta.latency_buckets.get(self.latency_bound)
        counts = Counts(
            requests=delta.requests + delta.connect_failures,
            errors=delta.responses_5xx + delta.connect_failures,
            slow=0 if within_bound is None else max(delta.requests - within_bound, 0),
            log_errors=delta.log_errors,
        )
        absolute = Absolute(
            p99=histogram_quantile(0.99, delta.latency_buckets) if delta.requests else None,
            cpu_percent=_cpu_percent(older.saturation, newer.saturation, seconds),
            memory_bytes=newer.saturation.memory_bytes if newer.saturation else None,
        )
        return Reading(counts=counts, absolute=absolute, seconds=seconds)


def _cpu_percent(
    before: Saturation | None, after: Saturation | None, seconds: float
) -> float | None:
    """CPU use over the window, in percent of one core; None when it is unknown."""
    if before is None or after is None or seconds <= 0:
        return None
    used = after.cpu_seconds - before.cpu_seconds
    if used < 0:  # the replicas restarted: counted from zero again
        used = after.cpu_seconds
    return used / seconds * 100


def from_site(site: ProviderSite) -> RouterProvider:
    """The registry's factory: the environment's router and runtime, samples kept."""
    plane = site.target
    if not isinstance(plane, DataPlane):
        raise ConveyorError(
            f"the router metrics provider reads an environment's router: {site.environment} "
            "gave it none",
            hint="the router provider judges deploys; use provider: prometheus elsewhere",
        )
    return RouterProvider(
        plane.router, plane.runtime, environment=site.environment, on_sample=plane.on_sample
    )
