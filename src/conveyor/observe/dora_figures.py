"""The figures DORA is summarised by: spreads (median, p90), the State of DevOps
performance bands, and weekly trends of the deployments a report counts."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from conveyor.spec.durations import format_duration

HOUR, DAY, WEEK, MONTH = 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0


class Band(StrEnum):
    """The performance clusters of the State of DevOps reports (2023, 2024)."""

    ELITE = "elite"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


BAND_ORDER = (Band.ELITE, Band.HIGH, Band.MEDIUM, Band.LOW)


@dataclass(frozen=True)
class Spread:
    """Seconds: the median (mean of the two middle values for an even count) and the p90
    (nearest rank: the ceil(0.9 n)-th smallest)."""

    count: int
    median: float | None
    p90: float | None


@dataclass(frozen=True)
class WeekTrend:
    week: str  # the Monday (UTC) the week starts on, ISO date
    start: float
    deployments: int
    failed: int
    change_failure_rate: float | None
    lead_time_median: float | None
    recovery_median: float | None
    rework: int
    canary_stops: int


@dataclass(frozen=True)
class Bands:
    deployment_frequency: Band
    lead_time: Band | None
    change_failure_rate: Band | None
    recovery_time: Band | None
    overall: Band  # the worst of the four known


class Counted(Protocol):
    """A deployment as the trends read it (observe.dora.DeploymentFact)."""

    @property
    def full_traffic_at(self) -> float: ...
    @property
    def failed_at(self) -> float | None: ...
    @property
    def restored_at(self) -> float | None: ...
    @property
    def lead_time(self) -> float | None: ...
    @property
    def rework(self) -> bool: ...


def spread(values: Sequence[float]) -> Spread:
    if not values:
        return Spread(0, None, None)
    ordered = sorted(values)
    p90 = ordered[math.ceil(0.9 * len(ordered)) - 1]
    return Spread(len(ordered), float(statistics.median(ordered)), float(p90))


def bands(
    per_day: float, lead_median: float | None, cfr: float | None, recovery: float | None
) -> Bands:
    """Each figure's cluster: deployment frequency and lead time as the 2024 report draws
    them; change failure rate and recovery time as the 2023 report does (2024's clusters
    do not order those two: its medium cluster fails less often than its high one)."""
    frequency = _frequency_band(per_day)
    lead = _band(lead_median, (DAY, WEEK, MONTH)) if lead_median is not None else None
    failure = _band(cfr, (0.05, 0.10, 0.15), closed=True) if cfr is not None else None
    restore = _band(recovery, (HOUR, DAY, WEEK)) if recovery is not None else None
    known = [b for b in (frequency, lead, failure, restore) if b is not None]
    overall = max(known, key=BAND_ORDER.index)
    return Bands(frequency, lead, failure, restore, overall)


def _frequency_band(per_day: float) -> Band:
    """On demand (a deployment a day or more), daily to weekly, weekly to monthly, less."""
    for band, at_least in zip(BAND_ORDER, (1.0, 1 / 7, 1 / 30), strict=False):
        if per_day >= at_least:
            return band
    return Band.LOW


def _band(value: float, limits: tuple[float, float, float], closed: bool = False) -> Band:
    """ELITE below the first limit, HIGH below the second, MEDIUM below the third (at or
    below, when `closed`), else LOW."""
    for band, limit in zip(BAND_ORDER, limits, strict=False):
        if value < limit or (closed and value == limit):
            return band
    return Band.LOW


def week_start(ts: float) -> float:
    """The Monday 00:00 UTC of the week `ts` falls in."""
    day = datetime.fromtimestamp(ts, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day - timedelta(days=day.weekday())).timestamp()


def weeks(
    facts: Sequence[Counted], stops: Sequence[float], since: float, until: float
) -> list[WeekTrend]:
    starts = [week_start(since)]  # every week the period touches, empty ones too
    while starts[-1] + WEEK < until:
        starts.append(starts[-1] + WEEK)
    by_week: dict[float, list[Counted]] = {s: [] for s in starts}
    for fact in facts:
        by_week.setdefault(week_start(fact.full_traffic_at), []).append(fact)
    stopped: dict[float, int] = {}
    for stopped_at in stops:
        key = week_start(stopped_at)
        stopped[key] = stopped.get(key, 0) + 1
    return [_week(s, by_week.get(s, []), stopped.get(s, 0)) for s in starts]


def _week(start: float, facts: Sequence[Counted], stops: int) -> WeekTrend:
    failed = [f for f in facts if f.failed_at is not None]
    leads = [f.lead_time for f in facts if f.lead_time is not None]
    recoveries = [f.restored_at - f.full_traffic_at for f in failed if f.restored_at]
    return WeekTrend(
        week=datetime.fromtimestamp(start, UTC).date().isoformat(),
        start=start,
        deployments=len(facts),
        failed=len(failed),
        change_failure_rate=len(failed) / len(facts) if facts else None,
        lead_time_median=spread(leads).median,
        recovery_median=spread(recoveries).median,
        rework=sum(1 for f in facts if f.rework),
        canary_stops=stops,
    )


# --- words for people (the CLI's text and the UI share them) ---------------------------


def describe_spread(found: Spread) -> str:
    if found.count == 0:
        return "none"
    median, p90 = describe_duration(found.median), describe_duration(found.p90)
    return f"median {median}, p90 {p90} (n={found.count})"


def describe_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 2 * DAY:
        return f"{seconds / DAY:.1f}d"
    return format_duration(seconds)


def describe_percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"
