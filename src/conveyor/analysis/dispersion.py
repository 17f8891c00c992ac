"""How far events cluster: the tempering weight of each interval's likelihood ratio.

Errors often come in clusters (a client's retries, a broken session, a batch job, a bad
upstream connection). A cluster lands in one arm as a whole, so the attribution tests,
which count every event as an independent draw, would count a cluster of k as k draws of
evidence. Raising an interval's likelihood ratio to the power 1/k, k at least the size of
its largest cluster, counts each cluster as at most one draw, and keeps every e-process
valid (docs/analysis.md, "Clustered events").

The cluster size is estimated from the events of all arms together, never from which arm
they landed in: the index of dispersion (variance over mean, once the traffic is
accounted for) of the event counts over windows of 1, 4, 16 and 64 intervals. Poisson
counts have an index of 1; counts made of clusters of k have about k, at the scales as
long as the clusters last. An interval far above its expected count is a cluster by
itself, and weighs as one event.
"""

from __future__ import annotations

import math
from collections import deque

SCALES = (1, 2, 4, 8, 16, 32, 64)  # window lengths, in intervals
MIN_WINDOWS = 4  # a scale counts once it has this many windows' worth of intervals
GATE_Z = 4.0  # a scale's index counts once over Poisson's chance, this many sigmas out
SPIKE_Z = 4.0  # an interval this many standard deviations over its expected count
MAX_FACTOR = 1e6
# Until the shortest scale has this many windows (about a minute), clusters of a few
# errors could not have shown yet: every interval counts as holding clusters of
# PRIOR_CLUSTERS at least. The past is re-tempered once the data say how large they are.
READY_WINDOWS = 60
PRIOR_CLUSTERS = 3.0


class _Scale:
    """Sliding windows of `length` intervals: sums over every full window's counts for
    their variance around the expected count."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.recent: deque[tuple[int, int]] = deque()
        self.open_events = 0
        self.open_requests = 0
        self.windows = 0
        self.events = 0.0
        self.requests = 0.0
        self.events_squared = 0.0
        self.events_requests = 0.0
        self.requests_squared = 0.0

    def add(self, events: int, requests: int) -> None:
        self.recent.append((events, requests))
        self.open_events += events
        self.open_requests += requests
        if len(self.recent) > self.length:
            gone_events, gone_requests = self.recent.popleft()
            self.open_events -= gone_events
            self.open_requests -= gone_requests
        if len(self.recent) < self.length:
            return
        x, n = float(self.open_events), float(self.open_requests)
        self.windows += 1
        self.events += x
        self.requests += n
        self.events_squared += x * x
        self.events_requests += x * n
        self.requests_squared += n * n

    def index(self) -> float | None:
        """Variance over mean of the window counts around rate x requests, when it is
        clearly over 1 (Poisson); None while it is not, or there are too few windows."""
        if self.events <= 0 or self.requests <= 0:
            return None
        # Overlapping windows are not independent: about 1.5 per window length.
        freedom = min(self.windows - 1.0, 1.5 * self.windows / self.length - 1.0)
        if freedom < MIN_WINDOWS - 1:
            return None
        rate = self.events / self.requests
        spread = (
            self.events_squared
            - 2.0 * rate * self.events_requests
            + rate * rate * self.requests_squared
        )
        index = spread / (rate * self.requests) * (freedom + 1.0) / freedom
        return index if index > _poisson_ceiling(freedom, self.events / self.windows) else None


def _poisson_ceiling(freedom: float, mean: float) -> float:
    """How high the index of Poisson counts (mean `mean` per window) gets by chance: the
    chi-square upper quantile at GATE_Z (Wilson-Hilferty), on the freedom left once
    the counts' extra kurtosis (1/mean) is counted."""
    nu = freedom * 2.0 / (2.0 + 1.0 / mean)
    spread = 2.0 / (9.0 * nu)
    return float((1.0 - spread + GATE_Z * math.sqrt(spread)) ** 3)


class Dispersion:
    """Fed every interval's events and requests summed over all arms; gives the weight
    that interval's likelihood ratios are raised to."""

    def __init__(self, scales: tuple[int, ...] = SCALES) -> None:
        self.scales = [_Scale(length) for length in scales]
        self.events = 0
        self.requests = 0
        self.found = 1.0  # the cluster size found so far (it only grows)
        self.clusters = PRIOR_CLUSTERS  # what intervals are tempered by: found, once ready
        self.factor = 1.0  # the last interval's: 1 / weight

    def update(self, events: int, requests: int) -> float | None:
        """Take an interval; its own weight if it is a spike (1 / its events), else None:
        it is tempered by `clusters` like every other interval."""
        spike = self._spike(events, requests)
        self.events += events
        self.requests += requests
        for scale in self.scales:
            scale.add(events, requests)
        indices = [i for i in (s.index() for s in self.scales) if i is not None]
        self.found = min(max([self.found, *indices]), MAX_FACTOR)
        ready = self.scales[0].windows >= READY_WINDOWS
        self.clusters = self.found if ready else max(self.found, PRIOR_CLUSTERS)
        self.factor = max(self.clusters, float(events)) if spike else self.clusters
        return 1.0 / self.factor if spike else None

    def _spike(self, events: int, requests: int) -> bool:
        """More events than the interval's traffic explains at the rate so far, even
        with the clusters found so far. With no history, any interval of several events
        may be one cluster."""
        if events <= 1:
            return False
        if self.requests <= 0 or requests <= 0:
            return True
        expected = self.events / self.requests * requests
        return events > expected + SPIKE_Z * math.sqrt(expected * self.found) + self.found

    def indices(self) -> dict[str, float | None]:
        """Per scale, for the evidence."""
        return {f"{s.length}": s.index() for s in self.scales}
