"""The metrics provider Protocol: counts per release since the previous reading.

Backends, one module each and listed in `registry.py`: `router` (the environment's
router's golden signals, the default) and `prometheus` (PromQL templates against a
Prometheus server, e.g. one that scrapes HAProxy's exporter or the builtin router's
`/-/metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from conveyor.analysis.model import Absolute, Counts

if TYPE_CHECKING:
    from conveyor.deploy.model import SignalSample
    from conveyor.deploy.routers.base import Router
    from conveyor.deploy.runtimes.base import Runtime
    from conveyor.spec.strategy import Analysis

SampleSink = Callable[[list["SignalSample"]], None]


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
    router: Router
    runtime: Runtime
    on_sample: SampleSink | None = None  # receives each router sample, to be stored


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
