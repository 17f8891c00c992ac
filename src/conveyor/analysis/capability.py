"""What the judge can tell at a given traffic, and how soon: `conveyor release explain`.

The figures come from the judge itself, run on simulated streams shaped like the
environment's traffic (`simulation`): its request rate, its error rate, the canary's and
the baseline's shares. A few runs per question, with fixed seeds, so the same traffic
always gives the same answer:

- a harmless release: when it is promoted, and the largest regression it could still be
  hiding after 1, 5 and 10 minutes (the confidence bounds a promotion then would rest on);
- 2x and 10x error regressions: when the harm detector rolls them back (the judge keeps
  watching past a promotion, so this is the detector's own time).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.analysis.judge import Judge
from conveyor.analysis.model import Verdict
from conveyor.analysis.simulation import Scenario, stream
from conveyor.spec.strategy import Analysis

CHECKPOINTS = (60.0, 300.0, 600.0)  # seconds: the hidden regressions are read there
EFFECTS = (2.0, 10.0)  # the error regressions the harm detector is timed on
RUNS = 10
HORIZON = 900.0  # no run is watched longer (the default max_duration)


@dataclass(frozen=True)
class Traffic:
    """The traffic a canary would see: the whole service's, and the shares."""

    rate: float  # requests per second, all versions
    error_rate: float  # the old version's
    canary_share: float  # 0..1
    baseline_share: float  # 0..1


@dataclass(frozen=True)
class Hidden:
    """The largest regression a promotion after `seconds` could still hide: medians
    over the runs; None while unbounded in at least half of them."""

    seconds: float
    error_ratio: float | None
    error_rate: float | None  # of the canary's requests
    slow_ratio: float | None


@dataclass(frozen=True)
class Detection:
    """How soon the harm detector rolls back an error regression of `effect`."""

    effect: float
    median: float | None  # seconds; None: fewer than half the runs within the horizon
    p90: float | None
    caught: int  # runs rolled back within the horizon
    runs: int


@dataclass(frozen=True)
class Capability:
    traffic: Traffic
    runs: int
    promote_median: float | None  # seconds to a harmless release's promotion
    promote_p90: float | None
    promoted: int  # harmless runs promoted within the horizon
    hidden: tuple[Hidden, ...]
    detections: tuple[Detection, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "traffic": vars(self.traffic),
            "runs": self.runs,
            "promote": {
                "median_seconds": self.promote_median,
                "p90_seconds": self.promote_p90,
                "promoted": self.promoted,
            },
            "hidden": [vars(h) for h in self.hidden],
            "detections": [vars(d) for d in self.detections],
        }


def capability(settings: Analysis, traffic: Traffic, runs: int = RUNS, seed: int = 1) -> Capability:
    settings = settings.model_copy(update={"max_duration": HORIZON})
    harmless = _scenario(traffic, 1.0)
    promotions: list[float] = []
    readings: dict[float, list[dict[str, Any]]] = {at: [] for at in CHECKPOINTS}
    for run in range(runs):
        promoted, evidence = _harmless_run(settings, harmless, seed + run)
        if promoted is not None:
            promotions.append(promoted)
        for at, found in evidence.items():
            readings[at].append(found)
    hidden = tuple(_hidden(at, readings[at]) for at in CHECKPOINTS)
    # With no errors at all, "2x the errors" is still none: nothing to time.
    effects = EFFECTS if traffic.error_rate > 0 else ()
    detections = tuple(
        _detection(settings, _scenario(traffic, effect), effect, runs, seed) for effect in effects
    )
    return Capability(
        traffic,
        runs,
        _quantile(promotions, 0.5, runs),
        _quantile(promotions, 0.9, runs),
        len(promotions),
        hidden,
        detections,
    )


def _scenario(traffic: Traffic, effect: float) -> Scenario:
    return Scenario(
        f"{effect:g}x errors",
        traffic.rate,
        traffic.error_rate,
        canary_share=traffic.canary_share,
        baseline_share=traffic.baseline_share,
        error_multiplier=effect,
    )


def _harmless_run(
    settings: Analysis, scenario: Scenario, seed: int
) -> tuple[float | None, dict[float, dict[str, Any]]]:
    """When a harmless canary is first promoted, and the evidence at each checkpoint."""
    judge, promoted, evidence = Judge(settings), None, {}
    last = max(CHECKPOINTS)
    for obs in stream(scenario, seed):
        decision = judge.observe(obs)
        if promoted is None and decision.verdict is Verdict.PROMOTE:
            promoted = obs.elapsed
        for at in CHECKPOINTS:
            if at not in evidence and obs.elapsed >= at:
                evidence[at] = dict(decision.evidence)
        if obs.elapsed >= HORIZON or (obs.elapsed >= last and promoted is not None):
            return promoted, evidence
    raise AssertionError("unreachable: the stream is endless")


def _hidden(seconds: float, readings: Sequence[dict[str, Any]]) -> Hidden:
    def median_of(kind: str, key: str) -> float | None:
        values = [r.get(kind, {}).get("hidden", {}).get(key) for r in readings]
        bounded = [math.inf if v is None else float(v) for v in values]
        middle = statistics.median(bounded) if bounded else math.inf
        return None if math.isinf(middle) else middle

    return Hidden(
        seconds,
        median_of("errors", "ratio"),
        median_of("errors", "rate"),
        median_of("latency", "ratio"),
    )


def _detection(
    settings: Analysis, scenario: Scenario, effect: float, runs: int, seed: int
) -> Detection:
    """The harm detector alone: a promotion does not end the run."""
    times = []
    for run in range(runs):
        judge = Judge(settings)
        for obs in stream(scenario, seed + run):
            if judge.observe(obs).verdict is Verdict.ROLLBACK:
                times.append(obs.elapsed)
                break
            if obs.elapsed >= HORIZON:
                break
    return Detection(
        effect, _quantile(times, 0.5, runs), _quantile(times, 0.9, runs), len(times), runs
    )


def _quantile(found: Sequence[float], q: float, runs: int) -> float | None:
    """The q-quantile over all runs, those without a value counting as never."""
    ordered = sorted(found)
    rank = math.ceil(q * runs) - 1
    return ordered[rank] if 0 <= rank < len(ordered) else None
