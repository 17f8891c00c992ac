"""What the judge reads and what it decides.

The judge sees the traffic of one sampling interval at a time, split by arm: the canary
(the new version), the baseline (the old version, started beside the canary with the
same replicas and traffic share) and the rest of the stable traffic. Counting events per
arm is all the error and latency tests need; the guardrails read the canary's absolute
figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class Counts:
    """One arm over one interval."""

    requests: int = 0
    errors: int = 0  # 5xx answers and failed connections
    slow: int = 0  # requests slower than the latency threshold
    log_errors: int = 0  # error-level lines in the replicas' logs (read when asked for)


@dataclass(frozen=True)
class Absolute:
    """The canary's absolute figures over the interval, for the guardrails."""

    p99: float | None = None  # seconds
    cpu_percent: float | None = None  # of one core
    memory_bytes: int | None = None


@dataclass(frozen=True)
class Observation:
    """One sampling interval: `elapsed` seconds since the analysis started, at its end."""

    elapsed: float
    canary: Counts
    baseline: Counts
    stable: Counts  # the old version's traffic outside the baseline
    canary_absolute: Absolute = field(default_factory=Absolute)


class Verdict(StrEnum):
    CONTINUE = "continue"  # not enough evidence either way yet: keep watching
    PROMOTE = "promote"  # evidence the canary is no worse than the smallest harmful effect
    ROLLBACK = "rollback"  # evidence the canary is worse, or a guardrail breached
    INCONCLUSIVE = "inconclusive"  # the maximum duration passed without evidence


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    elapsed: float
    # e-values, counts per arm, effect estimates, confidence sequences: what a report shows.
    evidence: Mapping[str, Any] = field(default_factory=dict)
    # With too little traffic: about how many more events (errors, slow requests) the
    # slowest test needs before it can decide, and what that means in requests.
    events_needed: int | None = None
    requests_needed: int | None = None

    def event_data(self) -> dict[str, Any]:
        """What a RELEASE_DECISION event records of it (a canary's and Argo's alike)."""
        return {
            "verdict": self.verdict.value,
            "reason": self.reason,
            "elapsed": round(self.elapsed, 3),
            "evidence": dict(self.evidence),
            "events_needed": self.events_needed,
            "requests_needed": self.requests_needed,
        }
