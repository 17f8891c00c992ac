"""An environment's golden signals in the Prometheus text format, for a scraper to read.

Each release is exposed as its latest sample: the router's cumulative counters and the
saturation of its replicas, labelled with the environment and the release. The samples
are already cumulative, so a custom collector yields them as they are.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from conveyor.deploy.model import SignalSample

PREFIX = "conveyor_release"
LABELS = ("environment", "release")


def exposition(environment: str, samples: Sequence[SignalSample]) -> bytes:
    """The latest sample of each release of `environment`, in the Prometheus text format."""
    strangers = sorted({sample.environment for sample in samples} - {environment})
    if strangers:
        raise ValueError(f"samples of {environment!r} expected, got some of {strangers}")
    registry = CollectorRegistry()
    registry.register(SignalsCollector(environment, latest_per_release(samples)))
    return prometheus_client.generate_latest(registry)


def latest_per_release(samples: Sequence[SignalSample]) -> list[SignalSample]:
    latest: dict[str, SignalSample] = {}
    for sample in samples:
        known = latest.get(sample.release_id)
        if known is None or sample.ts > known.ts:
            latest[sample.release_id] = sample
    return [latest[release] for release in sorted(latest)]


class SignalsCollector:
    """Yields the golden signals of fixed samples on every collection."""

    def __init__(self, environment: str, samples: Sequence[SignalSample]) -> None:
        self.environment = environment
        self.samples = samples

    def collect(self) -> Iterator[Metric]:
        yield from self._traffic()
        yield from self._saturation()

    def _traffic(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            f"{PREFIX}_requests",
            "Requests the router forwarded to the release since it started.",
            labels=LABELS,
        )
        responses = CounterMetricFamily(
            f"{PREFIX}_responses",
            "Responses of the release since the router started, by status class (4xx, 5xx, other).",
            labels=(*LABELS, "code"),
        )
        connect_failures = CounterMetricFamily(
            f"{PREFIX}_connect_failures",
            "Connections to the release's replicas the router could not open.",
            labels=LABELS,
        )
        duration = HistogramMetricFamily(
            f"{PREFIX}_request_duration_seconds",
            "Time from request to the end of the response, through the router.",
            labels=LABELS,
        )
        weight = GaugeMetricFamily(
            f"{PREFIX}_weight",
            "The release's share of the environment's traffic, 0 to 100.",
            labels=LABELS,
        )
        for sample in self.samples:
            labels = (self.environment, sample.release_id)
            signals = sample.signals
            requests.add_metric(labels, signals.requests)
            other = signals.requests - signals.responses_4xx - signals.responses_5xx
            for code, count in (
                ("4xx", signals.responses_4xx),
                ("5xx", signals.responses_5xx),
                ("other", max(other, 0)),
            ):
                responses.add_metric((*labels, code), count)
            connect_failures.add_metric(labels, signals.connect_failures)
            duration.add_metric(labels, histogram_buckets(sample), signals.latency_sum)
            weight.add_metric(labels, sample.weight)
        yield from (requests, responses, connect_failures, duration, weight)

    def _saturation(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily(
            f"{PREFIX}_cpu_seconds",
            "CPU time the release's running replicas used, user plus system.",
            labels=LABELS,
        )
        memory = GaugeMetricFamily(
            f"{PREFIX}_memory_bytes",
            "Resident memory of the release's running replicas.",
            labels=LABELS,
        )
        open_files = GaugeMetricFamily(
            f"{PREFIX}_open_files",
            "File descriptors the release's running replicas hold open.",
            labels=LABELS,
        )
        for sample in self.samples:
            if sample.saturation is None:  # not running here: nothing to read
                continue
            labels = (self.environment, sample.release_id)
            cpu.add_metric(labels, sample.saturation.cpu_seconds)
            memory.add_metric(labels, sample.saturation.memory_bytes)
            open_files.add_metric(labels, sample.saturation.open_files)
        yield from (cpu, memory, open_files)


def histogram_buckets(sample: SignalSample) -> list[tuple[str, float]]:
    """The latency buckets as (le, count), ending with +Inf = every request, so that the
    histogram's count is the request count even when the router keeps no buckets."""
    signals = sample.signals
    finite = sorted(bound for bound in signals.latency_buckets if not math.isinf(bound))
    return [
        *((le_label(bound), signals.latency_buckets[bound]) for bound in finite),
        ("+Inf", signals.requests),
    ]


def le_label(bound: float) -> str:
    """A bucket bound spelled as Go and prometheus_client's own histograms spell it, so the
    same bucket has the same `le` in every exposition."""
    label: str = floatToGoString(bound)  # type: ignore[no-untyped-call]  # untyped upstream
    return label
