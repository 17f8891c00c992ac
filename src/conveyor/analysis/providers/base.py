"""The metrics provider Protocol: counts per release since the previous reading.

Backends, one module each: `router` (the environment's router's golden signals, the
default) and `prometheus` (PromQL templates against a Prometheus server, e.g. one that
scrapes HAProxy's exporter or the builtin router's `/-/metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from conveyor.analysis.model import Absolute, Counts


@dataclass(frozen=True)
class Reading:
    """One release over the window between two readings."""

    counts: Counts
    absolute: Absolute
    seconds: float  # the window's length


class MetricsProvider(Protocol):
    name: str

    def start(self, releases: Sequence[str], latency_threshold: float) -> None:
        """Take the first reading: later windows count from here. `latency_threshold`
        (seconds) decides which requests count as slow."""
        ...

    def read(self) -> Mapping[str, Reading]:
        """Counts of each started release since the previous `start` or `read`."""
        ...
