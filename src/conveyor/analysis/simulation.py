"""Synthetic request streams for judging judges at full speed.

A scenario is a service's traffic: a rate, an error rate, a latency distribution, the
canary's and the baseline's shares, and an injected effect on the canary. Each interval
every arm's counts are drawn at once, never request by request: arrivals are Poisson, and
each request is an error (a fast failure), slow (over the latency threshold), or fine,
so the three counts are independent Poisson draws (thinning).

Optionally errors come in clusters (`Clustering`): a client's retry burst, a broken user
session, a batch job, a bad upstream connection, or a per-second error rate drawn from a
gamma. Each arm draws its own clusters, in proportion to its traffic, from the same
process: with no injected effect the canary and the old version still err alike.

    outcome = run(lambda: Judge(settings), scenario, max_seconds=1800, seed=7)
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Protocol

from conveyor.analysis.model import Absolute, Counts, Decision, Observation, Verdict

_P95_Z = NormalDist().inv_cdf(0.95)
_P99_Z = NormalDist().inv_cdf(0.99)


@dataclass(frozen=True)
class Latency:
    """Lognormal latencies, set by their median and p95 (seconds)."""

    p50: float = 0.1
    p95: float = 0.25

    @property
    def sigma(self) -> float:
        return math.log(self.p95 / self.p50) / _P95_Z

    def quantile(self, q: float, multiplier: float = 1.0, shift: float = 0.0) -> float:
        return self.p50 * multiplier * math.exp(self.sigma * NormalDist().inv_cdf(q)) + shift

    def share_over(self, threshold: float, multiplier: float = 1.0, shift: float = 0.0) -> float:
        """The fraction of requests slower than `threshold` when latencies are scaled,
        then `shift` seconds added to every one."""
        if threshold <= shift:
            return 1.0
        z = math.log((threshold - shift) / (self.p50 * multiplier)) / self.sigma
        return 1.0 - NormalDist().cdf(z)


@dataclass(frozen=True)
class Clustering:
    """Errors that arrive together rather than one by one.

    `share` of an arm's errors come in clusters of `size` errors, spread evenly over
    `seconds` consecutive intervals (a retry burst: one interval; a broken session: one
    error a second). A cluster starts in an arm at a rate in proportion to the arm's
    traffic and error rate, so an injected effect makes more clusters, not larger ones.
    With `gamma_shape` instead, each arm's error rate in each interval is the mean times
    a Gamma(shape, 1/shape) draw: overdispersed counts with no clusters to see."""

    size: int = 1
    seconds: int = 1
    share: float = 1.0
    gamma_shape: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: float  # requests per second, the whole service
    error_rate: float  # the old version's
    latency: Latency = field(default_factory=Latency)
    canary_share: float = 0.1
    baseline_share: float = 0.1  # stable serves the rest
    error_multiplier: float = 1.0  # the injected effect on the canary
    latency_multiplier: float = 1.0
    latency_shift: float = 0.0  # seconds added to every canary request (a slow call)
    # Fresh processes (canary and baseline alike) err this much more than warm stable
    # ones, for `warmup_seconds` (None: throughout): the bias the baseline guards against.
    warmup_error_multiplier: float = 1.0
    warmup_seconds: float | None = None
    interval: float = 1.0
    clustering: Clustering | None = None

    @property
    def latency_threshold(self) -> float:
        """Slow means slower than the old version's p95."""
        return self.latency.p95

    def slow_share(self, multiplier: float = 1.0, shift: float = 0.0) -> float:
        return self.latency.share_over(self.latency_threshold, multiplier, shift)

    @property
    def canary_slow_share(self) -> float:
        return self.slow_share(self.latency_multiplier, self.latency_shift)

    @property
    def true_effects(self) -> tuple[float, float]:
        """The injected effect as rate ratios to the baseline: errors, slow requests."""
        slow = self.canary_slow_share / self.slow_share()
        return self.error_multiplier, slow


class SequentialJudge(Protocol):
    def observe(self, obs: Observation) -> Decision: ...


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    seconds: float  # when the judge decided, or when the run stopped
    reason: str


@dataclass(frozen=True)
class _Arm:
    requests: float  # expected per interval
    error_rate: float
    slow_rate: float

    def draw(self, rng: random.Random, clustered: _Clusters | None = None) -> Counts:
        single = self.requests * self.error_rate
        more = 0
        if clustered is not None:
            single, more = clustered.draw(self.requests * self.error_rate, rng)
        errors = poisson(single, rng)
        slow = poisson(self.requests * (1.0 - self.error_rate) * self.slow_rate, rng)
        fine = poisson(self.requests * (1.0 - self.error_rate) * (1.0 - self.slow_rate), rng)
        # Clustered errors are requests of their own (retries, a session's next clicks).
        return Counts(requests=errors + slow + fine + more, errors=errors + more, slow=slow)


class _Clusters:
    """One arm's clusters in progress: the errors each coming interval still owes."""

    def __init__(self, clustering: Clustering) -> None:
        self.clustering = clustering
        self.owed: list[int] = [0] * max(1, clustering.seconds)

    def draw(self, mean_errors: float, rng: random.Random) -> tuple[float, int]:
        """The mean of this interval's independent errors, and its clustered errors."""
        shape = self.clustering.gamma_shape
        if shape is not None:
            return mean_errors * rng.gammavariate(shape, 1.0 / shape), 0
        size, seconds, share = self.clustering.size, len(self.owed), self.clustering.share
        for _ in range(poisson(mean_errors * share / size, rng)):
            for offset in range(seconds):  # spread `size` as evenly as integers allow
                self.owed[offset] += (size * (offset + 1)) // seconds - (size * offset) // seconds
        now = self.owed.pop(0)
        self.owed.append(0)
        return mean_errors * (1.0 - share), now


def _arms(scenario: Scenario, *, warm: bool) -> tuple[_Arm, _Arm, _Arm]:
    per_interval = scenario.rate * scenario.interval
    fresh_errors = scenario.error_rate * (1.0 if warm else scenario.warmup_error_multiplier)
    slow = scenario.slow_share()
    canary = _Arm(
        per_interval * scenario.canary_share,
        min(fresh_errors * scenario.error_multiplier, 1.0),
        scenario.canary_slow_share,
    )
    baseline = _Arm(per_interval * scenario.baseline_share, min(fresh_errors, 1.0), slow)
    stable_share = 1.0 - scenario.canary_share - scenario.baseline_share
    stable = _Arm(per_interval * stable_share, scenario.error_rate, slow)
    return canary, baseline, stable


def stream(scenario: Scenario, seed: int) -> Iterator[Observation]:
    """Endless observations, one per interval, the same for the same seed."""
    rng = random.Random(seed)
    warming, warm = _arms(scenario, warm=False), _arms(scenario, warm=True)
    latency = scenario.latency
    absolute = Absolute(
        p99=latency.quantile(0.99, scenario.latency_multiplier, scenario.latency_shift)
    )
    clustering = scenario.clustering
    clusters = [_Clusters(clustering) if clustering else None for _ in range(3)]
    elapsed = 0.0
    while True:
        elapsed += scenario.interval
        ended = scenario.warmup_seconds is not None and elapsed > scenario.warmup_seconds
        canary, baseline, stable = warm if ended else warming
        yield Observation(
            elapsed=elapsed,
            canary=canary.draw(rng, clusters[0]),
            baseline=baseline.draw(rng, clusters[1]),
            stable=stable.draw(rng, clusters[2]),
            canary_absolute=absolute,
        )


def run(
    judge_factory: Callable[[], SequentialJudge],
    scenario: Scenario,
    *,
    max_seconds: float,
    seed: int,
) -> Outcome:
    """Feed one judge one stream until it decides or `max_seconds` pass."""
    judge = judge_factory()
    for obs in stream(scenario, seed):
        decision = judge.observe(obs)
        if decision.verdict is not Verdict.CONTINUE:
            return Outcome(decision.verdict, obs.elapsed, decision.reason)
        if obs.elapsed >= max_seconds:
            return Outcome(Verdict.INCONCLUSIVE, obs.elapsed, "maximum duration")
    raise AssertionError("unreachable: the stream is endless")


def poisson(mean: float, rng: random.Random) -> int:
    """A Poisson draw: multiplication of uniforms for small means, PTRS otherwise."""
    if mean <= 0.0:
        return 0
    if mean < 10.0:
        limit, count, product = math.exp(-mean), 0, rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
        return count
    return _ptrs(mean, rng)


def _ptrs(mean: float, rng: random.Random) -> int:
    """Hörmann's transformed rejection with squeeze (1993), as numpy draws large means."""
    slam, loglam = math.sqrt(mean), math.log(mean)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        if us <= 0.0:
            continue
        k = math.floor((2.0 * a / us + b) * u + mean + 0.43)
        if us >= 0.07 and v <= vr:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        accept = math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b)
        if accept <= -mean + k * loglam - math.lgamma(k + 1.0):
            return k
