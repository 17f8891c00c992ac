"""The judge's peers in the simulation harness, behind the same `observe()`.

- `FlaggerThreshold`: Flagger's analysis. Every interval (1 min) the canary's success rate
  over that minute is checked against a floor (99 %); a failed check adds to a counter that
  never resets, and at `threshold` (5) failed checks it rolls back. After `iterations`
  passing checks it promotes. It reads the canary alone: no baseline.
- `KayentaMannWhitney`: Kayenta's fixed-window judgement. The per-minute error rates (and
  slow shares) of canary and baseline over one window (15 min: the spec's default
  max_duration; Kayenta setups often run 30 min to hours) are compared once, at the
  window's end, with a one-sided Mann-Whitney U test at alpha per metric.
- `OracleSPRT`: knows the true effect. Wald's SPRT of theta = 1 against theta = the true
  effect on the same attribution events as the judge (pooled reference), stopping at
  1/alpha. Its detection time is the limit no real judge can beat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

from conveyor.analysis.model import Counts, Decision, Observation, Verdict


@dataclass
class _Window:
    """An arm's counts since the window opened."""

    requests: int = 0
    errors: int = 0
    slow: int = 0

    def add(self, counts: Counts) -> None:
        self.requests += counts.requests
        self.errors += counts.errors
        self.slow += counts.slow


class FlaggerThreshold:
    def __init__(
        self,
        *,
        interval: float = 60.0,
        threshold: int = 5,
        min_success_rate: float = 0.99,
        max_slow_share: float | None = None,
        iterations: int = 10,
    ) -> None:
        self.interval = interval
        self.threshold = threshold
        self.min_success_rate = min_success_rate
        # A latency check read from counts: at most this share of the minute's canary
        # requests over the latency threshold (a quantile threshold with headroom).
        self.max_slow_share = max_slow_share
        self.iterations = iterations
        self.window = _Window()
        self.window_end = interval
        self.failed = 0
        self.passed = 0

    def observe(self, obs: Observation) -> Decision:
        self.window.add(obs.canary)
        if obs.elapsed < self.window_end:
            return Decision(Verdict.CONTINUE, "collecting the minute", obs.elapsed)
        self.window_end += self.interval
        window, self.window = self.window, _Window()
        failure = self._check(window)
        if failure is None:
            self.passed += 1
        else:
            self.failed += 1
        evidence = {"failed_checks": self.failed, "passed_checks": self.passed}
        if self.failed >= self.threshold:
            reason = f"{self.failed} failed checks, the last: {failure}"
            return Decision(Verdict.ROLLBACK, reason, obs.elapsed, evidence)
        if self.passed >= self.iterations:
            return Decision(Verdict.PROMOTE, "all iterations passed", obs.elapsed, evidence)
        return Decision(Verdict.CONTINUE, failure or "check passed", obs.elapsed, evidence)

    def _check(self, window: _Window) -> str | None:
        if window.requests == 0:
            return None  # Flagger skips a minute without traffic
        success = 1.0 - window.errors / window.requests
        if success < self.min_success_rate:
            return f"success rate {success:.2%} < {self.min_success_rate:.2%}"
        slow_share = window.slow / window.requests
        if self.max_slow_share is not None and slow_share > self.max_slow_share:
            return f"slow share {slow_share:.2%} > {self.max_slow_share:.2%}"
        return None


@dataclass
class _Series:
    """Per-sample rates of one arm, for one metric."""

    canary: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)


class KayentaMannWhitney:
    def __init__(
        self,
        *,
        window: float = 900.0,
        sample: float = 60.0,
        alpha: float = 0.01,
        latency: bool = True,
    ) -> None:
        self.window = window
        self.sample = sample
        self.alpha = alpha
        self.metrics = {"errors": _Series(), **({"slow": _Series()} if latency else {})}
        self.canary, self.baseline = _Window(), _Window()
        self.sample_end = sample

    def observe(self, obs: Observation) -> Decision:
        self.canary.add(obs.canary)
        self.baseline.add(obs.baseline)
        if obs.elapsed >= self.sample_end:
            self.sample_end += self.sample
            self._close_sample()
        if obs.elapsed < self.window:
            return Decision(Verdict.CONTINUE, "collecting the window", obs.elapsed)
        evidence: dict[str, float] = {}
        for name, series in self.metrics.items():
            p_value = mann_whitney_greater(series.canary, series.baseline)
            evidence[f"p_{name}"] = p_value
            if p_value < self.alpha:
                reason = f"{name}: canary higher than baseline, Mann-Whitney p = {p_value:.3g}"
                return Decision(Verdict.ROLLBACK, reason, obs.elapsed, evidence)
        return Decision(Verdict.PROMOTE, "no metric significantly worse", obs.elapsed, evidence)

    def _close_sample(self) -> None:
        for name, series in self.metrics.items():
            for arm, rates in ((self.canary, series.canary), (self.baseline, series.baseline)):
                if arm.requests:
                    events = arm.errors if name == "errors" else arm.slow
                    rates.append(events / arm.requests)
        self.canary, self.baseline = _Window(), _Window()


def mann_whitney_greater(first: list[float], second: list[float]) -> float:
    """One-sided p-value that `first` tends to be larger: the normal approximation with
    tie correction and continuity correction (scipy's method="asymptotic")."""
    n1, n2 = len(first), len(second)
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = sorted((value, arm) for arm, values in enumerate((first, second)) for value in values)
    ranks: dict[float, float] = {}
    ties = 0.0
    start = 0
    while start < len(pooled):
        end = start
        while end + 1 < len(pooled) and pooled[end + 1][0] == pooled[start][0]:
            end += 1
        ranks[pooled[start][0]] = (start + end) / 2.0 + 1.0
        size = end - start + 1
        ties += size**3 - size
        start = end + 1
    u = sum(ranks[value] for value in first) - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    variance = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(variance)
    return 1.0 - NormalDist().cdf(z)


class OracleSPRT:
    def __init__(self, *, effect: float, latency: bool = False, alpha: float = 0.01) -> None:
        self.effect = effect
        self.latency = latency
        self.log_threshold = math.log(1.0 / alpha)
        self.log_lr = 0.0

    def observe(self, obs: Observation) -> Decision:
        canary = obs.canary.slow if self.latency else obs.canary.errors
        reference = (
            obs.baseline.slow + obs.stable.slow
            if self.latency
            else (obs.baseline.errors + obs.stable.errors)
        )
        reference_requests = obs.baseline.requests + obs.stable.requests
        if obs.canary.requests and reference_requests and canary + reference:
            share = obs.canary.requests / (obs.canary.requests + reference_requests)
            self.log_lr += canary * math.log(self.effect) - (canary + reference) * math.log1p(
                share * (self.effect - 1.0)
            )
        evidence = {"log_lr": self.log_lr}
        if self.log_lr >= self.log_threshold:
            reason = f"SPRT for theta = {self.effect:.3g} crossed 1/alpha"
            return Decision(Verdict.ROLLBACK, reason, obs.elapsed, evidence)
        return Decision(Verdict.CONTINUE, "SPRT between bounds", obs.elapsed, evidence)
