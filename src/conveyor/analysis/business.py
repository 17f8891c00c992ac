"""The business guardrail: a ratio of business counters (conversion: orders / checkouts)
must not drop by more than `max_drop` against the reference, judged every interval.

    each interval: the source's counter increases per arm ─ totals since the step began
      either side under min_count (or unreadable, or inconsistent) ─ "no data": a
          promotion waits (CONTINUE, or INCONCLUSIVE after max_duration), never passes
      canary / reference rate surely below 1 - max_drop ─────────────────► ROLLBACK
      otherwise ─ the judge's own decision stands

Each denominator event is a trial and each numerator event its success; the rates'
confidence sequences (`eprocess.compare_proportions`) are anytime-valid, so looking
every interval costs no false rollbacks beyond the rail's `level`. Like the judge,
nothing here reads a network: the source (observe/business.py) does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from conveyor.analysis.eprocess import Comparison, Interval, compare_proportions
from conveyor.analysis.model import Decision, Verdict

PROBLEMS_KEPT = 20  # the newest source problems shown in the evidence


@dataclass(frozen=True)
class RatioRail:
    """One guarded ratio, as the spec's `business.guardrails` says."""

    ratio: str
    max_drop: float
    min_count: int = 20
    level: float = 0.05


@dataclass(frozen=True)
class BusinessReading:
    """One interval: per arm, per ratio, the increase of (numerator, denominator); arms
    or ratios left out were not readable. `problems`: resets, vanished counters,
    unreachable replicas, each one line, recorded with the decision."""

    increases: Mapping[str, Mapping[str, tuple[int, int]]]
    problems: tuple[str, ...] = ()


class BusinessSource(Protocol):
    def start(self, arms: Sequence[str]) -> None:
        """Take the counters' current values as the zero of each arm."""

    def read(self) -> BusinessReading: ...


class RailStatus(StrEnum):
    NO_DATA = "no-data"  # too few denominator events on a side: never a pass
    INCONSISTENT = "inconsistent"  # more numerator than denominator events: not a rate
    WATCHING = "watching"  # data, no evidence of a drop beyond the rail
    HOLDS = "holds"  # evidence the drop is within the rail
    BREACHED = "breached"  # evidence of a drop beyond the rail


@dataclass
class _Totals:
    per_arm: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def add(self, reading: BusinessReading) -> None:
        for arm, ratios in reading.increases.items():
            mine = self.per_arm.setdefault(arm, {})
            for ratio, (numerator, denominator) in ratios.items():
                total = mine.setdefault(ratio, [0, 0])
                total[0] += max(numerator, 0)
                total[1] += max(denominator, 0)

    def of(self, arm: str, ratio: str) -> tuple[int, int]:
        found = self.per_arm.get(arm, {}).get(ratio, [0, 0])
        return found[0], found[1]


def judge_rail(
    rail: RatioRail, arm: tuple[int, int], reference: tuple[int, int]
) -> tuple[RailStatus, Comparison | None]:
    """The rail's status from the (successes, trials) of the arm and the reference."""
    if arm[0] > arm[1] or reference[0] > reference[1]:
        return RailStatus.INCONSISTENT, None
    if arm[1] < rail.min_count or reference[1] < rail.min_count:
        return RailStatus.NO_DATA, None
    compared = compare_proportions(arm, reference, rail.level)
    floor = 1.0 - rail.max_drop
    high = compared.ratio.high
    if high is not None and high < floor:
        return RailStatus.BREACHED, compared
    if compared.ratio.low >= floor:
        return RailStatus.HOLDS, compared
    return RailStatus.WATCHING, compared


def interval_json(interval: Interval) -> dict[str, float | None]:
    return {"low": interval.low, "high": interval.high}


class BusinessGuard:
    """The business rails of one judged step, over a source of counter increases."""

    def __init__(self, rails: Sequence[RatioRail], source: BusinessSource) -> None:
        self.rails = tuple(rails)
        self.source = source
        self.totals = _Totals()
        self.problems: list[str] = []
        self.canary, self.reference = "", ""
        self.max_duration = float("inf")

    def start(self, canary: str, reference: str, max_duration: float) -> None:
        self.canary, self.reference, self.max_duration = canary, reference, max_duration
        self.source.start([canary, reference])

    def review(self, decision: Decision) -> Decision:
        """The judge's decision with the rails' evidence, overruled by a breach, and a
        promotion held while a rail has no data."""
        reading = self.source.read()
        self.totals.add(reading)
        self.problems = (self.problems + list(reading.problems))[-PROBLEMS_KEPT:]
        judged = [(rail, *self._judge(rail)) for rail in self.rails]
        evidence = {
            **decision.evidence,
            "business": {
                "canary": self.canary,
                "reference": self.reference,
                "rails": [self._evidence(r, s, c) for r, s, c in judged],
                "problems": list(self.problems),
            },
        }
        decision = replace(decision, evidence=evidence)
        breached = [(r, c) for r, s, c in judged if s is RailStatus.BREACHED and c is not None]
        if breached and decision.verdict is not Verdict.ROLLBACK:
            rail, compared = breached[0]
            return replace(decision, verdict=Verdict.ROLLBACK, reason=self._breach(rail, compared))
        missing = [r for r, s, _ in judged if s in (RailStatus.NO_DATA, RailStatus.INCONSISTENT)]
        if not missing:
            return decision
        why = "; ".join(self._missing(rail) for rail in missing)
        if decision.verdict is Verdict.PROMOTE:
            late = decision.elapsed >= self.max_duration
            verdict = Verdict.INCONCLUSIVE if late else Verdict.CONTINUE
            return replace(decision, verdict=verdict, reason=f"{decision.reason}; but {why}")
        if decision.verdict is Verdict.INCONCLUSIVE:
            return replace(decision, reason=f"{decision.reason}; {why}")
        return decision

    def _judge(self, rail: RatioRail) -> tuple[RailStatus, Comparison | None]:
        arm = self.totals.of(self.canary, rail.ratio)
        return judge_rail(rail, arm, self.totals.of(self.reference, rail.ratio))

    def _evidence(
        self, rail: RatioRail, status: RailStatus, compared: Comparison | None
    ) -> dict[str, Any]:
        arm, reference = (
            self.totals.of(name, rail.ratio) for name in (self.canary, self.reference)
        )
        found: dict[str, Any] = {
            "ratio": rail.ratio,
            "max_drop": rail.max_drop,
            "level": rail.level,
            "min_count": rail.min_count,
            "status": status.value,
            "canary": {"numerator": arm[0], "denominator": arm[1]},
            "reference": {"numerator": reference[0], "denominator": reference[1]},
        }
        if compared is not None:
            found["canary"]["interval"] = interval_json(compared.arm)
            found["reference"]["interval"] = interval_json(compared.reference)
            found["ratio_interval"] = interval_json(compared.ratio)
            found["difference_interval"] = interval_json(compared.difference)
        return found

    def _breach(self, rail: RatioRail, compared: Comparison) -> str:
        arm, reference = (
            self.totals.of(name, rail.ratio) for name in (self.canary, self.reference)
        )
        high = compared.ratio.high or 0.0
        return (
            f"business guardrail {rail.ratio}: canary {_rate(arm)} against {_rate(reference)}; "
            f"at most {high:.3g}x the reference (confidence sequence at level {rail.level:g}), "
            f"a drop beyond the {rail.max_drop:.0%} tolerated"
        )

    def _missing(self, rail: RatioRail) -> str:
        arm, reference = (
            self.totals.of(name, rail.ratio) for name in (self.canary, self.reference)
        )
        if arm[0] > arm[1] or reference[0] > reference[1]:
            return (
                f"business guardrail {rail.ratio}: more numerator than denominator events "
                f"(canary {arm[0]}/{arm[1]}, reference {reference[0]}/{reference[1]}): not judged"
            )
        return (
            f"business guardrail {rail.ratio}: no data yet (canary {arm[1]}, reference "
            f"{reference[1]} of the {rail.min_count} denominator events each side needs)"
        )


def _rate(counts: tuple[int, int]) -> str:
    successes, trials = counts
    share = successes / trials if trials else 0.0
    return f"{share:.1%} ({successes}/{trials})"
