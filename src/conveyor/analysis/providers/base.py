"""The metrics provider Protocol: counts per release since the previous reading.

Backends, one module each and listed in `registry.py`: `router` (the environment's
router's golden signals, the default; it reads the data plane, so it lives with it in
deploy/router_metrics.py) and `prometheus` (PromQL templates against a Prometheus
server, e.g. one that scrapes HAProxy's exporter or the builtin router's `/-/metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from conveyor.analysis.model import Absolute, Counts
from conveyor.spec.strategy import Analysis


@dataclass(frozen=True)
class Reading:
    """One release over the window between two readings."""

    counts: Counts
    absolute: Absolute
    seconds: float  # the window's length


@dataclass(frozen=True)
class ProviderSite:
    """What every metrics provider is made from (its factory's one argument)."""

    settings: Analysis  # the strategy's analysis settings
    environment: str
    # What a provider that reads the caller's own systems needs from them: the deploy
    # layer hands the `router` provider its data plane here. Opaque to analysis/, which
    # knows nothing of deploy/; a factory checks it got what it reads.
    target: object = None


@runtime_checkable
class MetricsProvider(Protocol):
    name: str

    def start(self, releases: Sequence[str], latency_threshold: float) -> None:
        """Take the first reading: later windows count from here. `latency_threshold`
        (seconds) decides which requests count as slow."""
        ...

    def read(self) -> Mapping[str, Reading]:
        """Counts of each started release since the previous `start` or `read`."""
        ...
