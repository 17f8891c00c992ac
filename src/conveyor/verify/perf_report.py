"""How a `perf` run is shown: the table for the job log and the published "perf" report."""

from __future__ import annotations

from typing import Any

from conveyor.findings.reports import PerfComparison, PerfReport
from conveyor.verify.perf import (
    Change,
    Comparison,
    LoadSettings,
    PerfThresholds,
    PerfVerdict,
    ThresholdCheck,
)
from conveyor.verify.perf_stats import EndpointStats, LoadStats
from conveyor.verify.target import Target

_HEADER = ("Method", "Name", "Requests", "Failed", "p50 ms", "p95 ms", "p99 ms", "Max ms", "Req/s")
_TEXT_COLUMNS = 2  # left-aligned; the numbers are right-aligned


def stats_table(stats: LoadStats) -> list[str]:
    """One aligned line per endpoint, then the total."""
    rows = [_cells(row) for row in stats.endpoints]
    rows.append(_cells(stats.total, name="Total"))
    widths = [max(len(row[i]) for row in (_HEADER, *rows)) for i in range(len(_HEADER))]
    return [_line(row, widths) for row in (_HEADER, *rows)]


def _cells(row: EndpointStats, name: str | None = None) -> tuple[str, ...]:
    failed = f"{row.failures} ({row.error_rate:.1f}%)" if row.failures else "0"
    latencies = (row.p50_ms, row.p95_ms, row.p99_ms, row.max_ms)
    return (
        row.method,
        name or row.name,
        str(row.requests),
        failed,
        *(f"{value:.0f}" for value in latencies),
        f"{row.rps:.1f}",
    )


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    parts = [
        cell.ljust(width) if index < _TEXT_COLUMNS else cell.rjust(width)
        for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  ".join(parts).rstrip()


def change_lines(comparison: Comparison) -> list[str]:
    """One line per compared metric, regressions marked."""
    return [
        f"  {'✗' if change.regressed else '·'} {change.describe()}" for change in comparison.changes
    ]


def perf_report(
    *,
    job: str,
    target: Target,
    settings: LoadSettings,
    stats: LoadStats,
    thresholds: PerfThresholds,
    max_regression: float,
    verdict: PerfVerdict,
) -> PerfReport:
    """The published "perf" report; a later run reads `job`, `settings` and `totals` back
    as its baseline (conveyor.verify.perf.BaselineReport)."""
    return PerfReport(
        job=job,
        target=target.as_json(),
        settings=settings.model_dump(),
        totals=_totals(stats.total),
        endpoints=[
            {"method": row.method, "name": row.name, **_totals(row)} for row in stats.endpoints
        ],
        errors=[error.model_dump() for error in stats.errors],
        exceptions=[error.model_dump() for error in stats.exceptions],
        thresholds={
            "limits": thresholds.model_dump(),
            "checks": [_check(check) for check in verdict.checks],
        },
        comparison=PerfComparison(
            note=verdict.comparison.note,
            baseline_release=verdict.comparison.baseline_release,
            max_regression=max_regression,
            changes=[_change(change) for change in verdict.comparison.changes],
        ),
        passed=verdict.passed,
        reasons=list(verdict.reasons),
    )


def report_summary(stats: LoadStats, verdict: PerfVerdict) -> dict[str, Any]:
    total = stats.total
    return {
        "requests": total.requests,
        "error_rate": round(total.error_rate, 2),
        "p95_ms": total.p95_ms,
        "rps": round(total.rps, 1),
        "passed": verdict.passed,
    }


def _totals(row: EndpointStats) -> dict[str, Any]:
    return {
        "requests": row.requests,
        "failures": row.failures,
        "error_rate": row.error_rate,
        "rps": row.rps,
        "p50_ms": row.p50_ms,
        "p95_ms": row.p95_ms,
        "p99_ms": row.p99_ms,
        "max_ms": row.max_ms,
        "avg_ms": row.avg_ms,
    }


def _check(check: ThresholdCheck) -> dict[str, Any]:
    return {
        "metric": check.metric.value,
        "limit": check.limit,
        "actual": check.actual,
        "passed": check.passed,
    }


def _change(change: Change) -> dict[str, Any]:
    return {
        "metric": change.metric.value,
        "baseline": change.baseline,
        "current": change.current,
        "change_percent": change.percent,
        "regressed": change.regressed,
        "not_judged": change.not_judged,
    }
