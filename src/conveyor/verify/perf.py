"""The `perf` step's judgement: thresholds on Locust's statistics (conveyor.verify.perf_stats)
and the comparison with the previous release's result.

Locust's latencies are rounded bucket values (whole milliseconds below 100 ms), so a
change of a millisecond or two on a fast service is rounding, not a regression: latency
changes within `tolerance_ms` never count as one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conveyor.spec.types import Duration
from conveyor.verify.perf_stats import EndpointStats, LoadStats, Metric

DEFAULT_MAX_ERROR_RATE = 1.0  # percent: a load run where requests fail is no pass by default
NO_BASELINE = "no previous result to compare with"
COMPARED = (Metric.P95, Metric.P99, Metric.RPS)  # what a regression is measured on
MIN_TAIL = 10  # requests beyond a latency percentile, in both runs, before it is compared


class PerfThresholds(BaseModel):
    """Limits the run must meet; a missing one is not checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p95: Duration | None = Field(default=None, description="Highest 95th percentile latency.")
    p99: Duration | None = Field(default=None, description="Highest 99th percentile latency.")
    error_rate: float | None = Field(
        default=DEFAULT_MAX_ERROR_RATE,
        ge=0,
        le=100,
        description="Highest share of failed requests, in percent (default 1; null: any).",
    )
    min_rps: float | None = Field(
        default=None, ge=0, description="Lowest throughput, in requests per second."
    )

    def limits(self) -> dict[Metric, float]:
        """Each set limit in the unit it is measured in (latencies in ms)."""
        limits = {
            Metric.P95: None if self.p95 is None else self.p95 * 1000,
            Metric.P99: None if self.p99 is None else self.p99 * 1000,
            Metric.ERROR_RATE: self.error_rate,
            Metric.RPS: self.min_rps,
        }
        return {metric: limit for metric, limit in limits.items() if limit is not None}


@dataclass(frozen=True)
class ThresholdCheck:
    metric: Metric
    limit: float
    actual: float

    @property
    def passed(self) -> bool:
        if self.metric.lower_is_better:
            return self.actual <= self.limit
        return self.actual >= self.limit

    def describe(self) -> str:
        actual, limit = self.metric.show(self.actual), self.metric.show(self.limit)
        if self.metric is Metric.RPS:
            relation = "meets" if self.passed else "is below"
            return f"throughput {actual} {relation} the minimum {limit}"
        relation = "is within" if self.passed else "exceeds"
        return f"{_label(self.metric)} {actual} {relation} the threshold {limit}"


def check_thresholds(
    total: EndpointStats, thresholds: PerfThresholds
) -> tuple[ThresholdCheck, ...]:
    return tuple(
        ThresholdCheck(metric, limit, total.measure(metric))
        for metric, limit in thresholds.limits().items()
    )


class LoadSettings(BaseModel):
    """How the load was made; runs compare only when their profile is the same."""

    model_config = ConfigDict(frozen=True)

    users: int
    spawn_rate: float
    duration: float
    locustfile: str
    locustfile_sha256: str

    def differs_from(self, other: LoadSettings) -> str | None:
        """Why a run with `other` settings measured a different load, if it did."""
        if self.locustfile_sha256 != other.locustfile_sha256:
            return "another locustfile"
        if (self.users, self.spawn_rate) != (other.users, other.spawn_rate):
            return f"{other.users} users spawned at {other.spawn_rate:g}/s"
        return None


class _BaselineTarget(BaseModel):
    release_id: str | None = None


class _BaselineTotals(BaseModel):
    requests: int = Field(default=0, ge=0)
    p95_ms: float = Field(ge=0)
    p99_ms: float = Field(ge=0)
    rps: float = Field(ge=0)


class BaselineReport(BaseModel):
    """The parts of a previous "perf" report the comparison needs."""

    job: str
    target: _BaselineTarget = _BaselineTarget()
    settings: LoadSettings
    totals: _BaselineTotals

    def measure(self, metric: Metric) -> float:
        match metric:
            case Metric.P95:
                return self.totals.p95_ms
            case Metric.P99:
                return self.totals.p99_ms
            case _:
                return self.totals.rps


@dataclass(frozen=True)
class Change:
    metric: Metric
    baseline: float
    current: float
    percent: float | None  # None: the baseline is zero, a ratio means nothing
    regressed: bool
    not_judged: str | None = None  # why this change cannot be a regression (too few requests)

    def describe(self) -> str:
        label = "throughput" if self.metric is Metric.RPS else _label(self.metric)
        moved = f"{self.metric.show(self.baseline)} to {self.metric.show(self.current)}"
        if self.not_judged is not None:
            return f"{label} went from {moved}: {self.not_judged}"
        if self.percent is None:
            return f"{label} went from {moved}"
        verb = "regressed" if self.regressed else "went"
        return f"{label} {verb} from {moved} ({self.percent:+.1f}%)"


def measure_change(
    metric: Metric, baseline: float, current: float, *, max_regression: float, tolerance_ms: float
) -> Change:
    """A regression is a change for the worse beyond `max_regression` percent (and, for a
    latency, beyond `tolerance_ms`: Locust's rounding and a busy machine's noise)."""
    if baseline == 0:
        return Change(metric, baseline, current, None, regressed=False)
    percent = 100 * (current - baseline) / baseline
    worse_by = percent if metric.lower_is_better else -percent
    beyond_noise = metric is Metric.RPS or current - baseline > tolerance_ms
    return Change(metric, baseline, current, percent, worse_by > max_regression and beyond_noise)


@dataclass(frozen=True)
class Comparison:
    note: str  # what the run was compared with, or why it was not
    baseline_release: str | None = None
    changes: tuple[Change, ...] = ()

    @property
    def regressions(self) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if change.regressed)


def read_baseline(reports: Iterable[bytes], job: str) -> BaselineReport | None:
    """This job's report among the target branch's "perf" reports (unreadable: skipped)."""
    for content in reports:
        try:
            report = BaselineReport.model_validate_json(content)
        except ValidationError:
            continue
        if report.job == job:
            return report
    return None


def compare(
    total: EndpointStats,
    settings: LoadSettings,
    baseline: BaselineReport | None,
    *,
    max_regression: float,
    tolerance_ms: float,
) -> Comparison:
    if baseline is None:
        return Comparison(NO_BASELINE)
    release = baseline.target.release_id
    previous = f"the previous result (release {release})" if release else "the previous result"
    different = settings.differs_from(baseline.settings)
    if different is not None:
        return Comparison(f"not compared: {previous} ran {different}", release)
    changes = []
    for metric in COMPARED:
        change = measure_change(
            metric,
            baseline.measure(metric),
            total.measure(metric),
            max_regression=max_regression,
            tolerance_ms=tolerance_ms,
        )
        fewest = min(baseline.totals.requests, total.requests)
        needed = requests_to_compare(metric)
        if fewest < needed:
            note = f"not judged, a {metric.value} needs {needed} requests in both runs"
            change = replace(change, regressed=False, not_judged=note)
        changes.append(change)
    return Comparison(f"compared with {previous}", release, tuple(changes))


def requests_to_compare(metric: Metric) -> int:
    """A latency percentile says something only with enough requests beyond it: the p99 of
    180 requests is the second-slowest request, noise. At least MIN_TAIL requests must lie
    beyond the percentile in both runs (200 for p95, 1000 for p99)."""
    tail = {Metric.P95: 0.05, Metric.P99: 0.01}.get(metric)
    return 0 if tail is None else round(MIN_TAIL / tail)


@dataclass(frozen=True)
class PerfVerdict:
    checks: tuple[ThresholdCheck, ...]
    comparison: Comparison
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.reasons


def judge(
    stats: LoadStats, thresholds: PerfThresholds, comparison: Comparison, max_regression: float
) -> PerfVerdict:
    reasons: list[str] = []
    if stats.total.requests == 0:
        reasons.append("Locust made no request: the locustfile's users did nothing")
    if stats.exceptions:
        count = sum(error.count for error in stats.exceptions)
        reasons.append(
            f"the locustfile raised {count} exception(s), first: {stats.exceptions[0].message}"
        )
    checks = check_thresholds(stats.total, thresholds)
    for check in checks:
        if not check.passed:
            reasons.append(check.describe() + _most_common_error(stats, check.metric))
    reasons.extend(
        f"{change.describe()}, beyond the allowed {max_regression:g}%"
        for change in comparison.regressions
    )
    return PerfVerdict(checks, comparison, tuple(reasons))


def _most_common_error(stats: LoadStats, metric: Metric) -> str:
    if metric is not Metric.ERROR_RATE or not stats.errors:
        return ""
    top = max(stats.errors, key=lambda error: error.occurrences)
    return f" (most often: {top.method} {top.name}: {top.error}, {top.occurrences}x)"


def _label(metric: Metric) -> str:
    return "error rate" if metric is Metric.ERROR_RATE else metric.value
