"""The `perf` step's judgement, on statistics shaped like those the Locust plugin writes."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

from conveyor.verify.perf import (
    NO_BASELINE,
    BaselineReport,
    LoadSettings,
    PerfThresholds,
    PerfVerdict,
    check_thresholds,
    compare,
    judge,
    measure_change,
    read_baseline,
)
from conveyor.verify.perf_report import change_lines, perf_report, report_summary, stats_table
from conveyor.verify.perf_stats import LoadStats, Metric, StatsUnreadable, parse_stats
from conveyor.verify.target import Target

JOB = "perf"
SETTINGS = LoadSettings(
    users=10, spawn_rate=10, duration=30, locustfile="perf/locustfile.py", locustfile_sha256="ab"
)


def row(name: str, method: str = "GET", **values: float) -> dict[str, Any]:
    defaults: dict[str, float] = {"requests": 100, "failures": 0, "p50_ms": 10, "p95_ms": 40}
    defaults |= {"p99_ms": 80, "max_ms": 95.5, "avg_ms": 15.2, "rps": 20.0}
    return {"method": method, "name": name, **defaults, **values}


def stats_document(total: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A statistics file as conveyor/verify/locust_report.py writes it."""
    return {
        "format": 1,
        "endpoints": [
            row("/api/products", requests=60, rps=12.0),
            row("/api/products/[id]", requests=40, p95_ms=20, rps=8.0),
        ],
        "total": total or row("Aggregated", method=""),
        "errors": [],
        "exceptions": [],
        **extra,
    }


def stats(total: dict[str, Any] | None = None, **extra: Any) -> LoadStats:
    return parse_stats(json.dumps(stats_document(total, **extra)).encode())


def baseline_report(
    job: str = JOB, settings: LoadSettings = SETTINGS, **totals: float
) -> dict[str, Any]:
    values = {"requests": 2000, "p95_ms": 40.0, "p99_ms": 80.0, "rps": 20.0} | totals
    return {
        "job": job,
        "target": {"release_id": "r-7"},
        "settings": settings.model_dump(),
        "totals": values,
    }


def baseline(**totals: float) -> BaselineReport:
    return BaselineReport.model_validate(baseline_report(JOB, SETTINGS, **totals))


def compared(now: LoadStats, before: BaselineReport | None, max_regression: float = 20) -> Any:
    return compare(now.total, SETTINGS, before, max_regression=max_regression, tolerance_ms=5)


# -- parsing ----------------------------------------------------------------------------


def test_parses_the_plugins_statistics_into_typed_rows() -> None:
    parsed = stats(
        errors=[
            {
                "method": "GET",
                "name": "/",
                "error": "HTTPError('500 Server Error')",
                "occurrences": 3,
            }
        ]
    )
    assert [endpoint.name for endpoint in parsed.endpoints] == [
        "/api/products",
        "/api/products/[id]",
    ]
    assert parsed.endpoints[1].p95_ms == 20
    assert parsed.total.requests == 100
    assert parsed.errors[0].occurrences == 3


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"", "the file"),
        (b'{"format": 1, "endpoints": []', "the file"),
        (json.dumps({**stats_document(), "total": {"name": "x"}}).encode(), "total.method"),
        (json.dumps(stats_document(row("Aggregated", requests=-1))).encode(), "total.requests"),
        (json.dumps({**stats_document(), "format": 2}).encode(), "format"),
    ],
)
def test_garbled_statistics_are_unreadable_naming_the_place(content: bytes, named: str) -> None:
    with pytest.raises(StatsUnreadable, match=named):
        parse_stats(content)


def test_error_rate_is_a_percentage_and_zero_without_requests() -> None:
    assert stats(row("Aggregated", requests=200, failures=5)).total.error_rate == 2.5
    assert stats(row("Aggregated", requests=0, failures=0)).total.error_rate == 0.0


# -- thresholds ---------------------------------------------------------------------------


def test_thresholds_read_durations_and_check_in_milliseconds() -> None:
    thresholds = PerfThresholds.model_validate({"p95": "40ms", "p99": "50ms", "min_rps": 25})
    checks = {check.metric: check for check in check_thresholds(stats().total, thresholds)}
    assert checks[Metric.P95].passed  # 40 ms at a 40 ms limit: met
    assert not checks[Metric.P99].passed
    assert checks[Metric.P99].describe() == "p99 80 ms exceeds the threshold 50 ms"
    assert not checks[Metric.RPS].passed
    assert checks[Metric.RPS].describe() == (
        "throughput 20.0 req/s is below the minimum 25.0 req/s"
    )


def test_error_rate_is_limited_to_one_percent_unless_set_otherwise() -> None:
    failing = stats(row("Aggregated", requests=100, failures=2)).total
    (default,) = check_thresholds(failing, PerfThresholds())
    assert default.metric is Metric.ERROR_RATE and not default.passed
    assert check_thresholds(failing, PerfThresholds(error_rate=None)) == ()
    (lenient,) = check_thresholds(failing, PerfThresholds(error_rate=5))
    assert lenient.passed


def test_threshold_keys_are_validated() -> None:
    with pytest.raises(pydantic.ValidationError):
        PerfThresholds.model_validate({"p90": "1s"})
    with pytest.raises(pydantic.ValidationError):
        PerfThresholds.model_validate({"error_rate": 150})
    with pytest.raises(pydantic.ValidationError):
        PerfThresholds.model_validate({"p95": "fast"})


# -- comparison ---------------------------------------------------------------------------


def test_a_slower_latency_beyond_the_allowed_percentage_is_a_regression() -> None:
    change = measure_change(Metric.P95, 40, 60, max_regression=20, tolerance_ms=5)
    assert change.regressed
    assert change.percent == 50
    assert change.describe() == "p95 regressed from 40 ms to 60 ms (+50.0%)"


def test_a_change_within_the_allowed_percentage_is_not_a_regression() -> None:
    assert not measure_change(Metric.P95, 40, 48, max_regression=20, tolerance_ms=5).regressed


def test_a_latency_change_within_the_tolerance_is_not_a_regression() -> None:
    # 3 ms -> 6 ms doubles, but is within Locust's rounding and the 5 ms tolerance.
    change = measure_change(Metric.P99, 3, 6, max_regression=20, tolerance_ms=5)
    assert change.percent == 100 and not change.regressed


def test_improvements_are_not_regressions() -> None:
    faster = measure_change(Metric.P95, 40, 10, max_regression=20, tolerance_ms=0)
    more = measure_change(Metric.RPS, 20, 80, max_regression=20, tolerance_ms=0)
    assert faster.percent == -75 and not faster.regressed
    assert more.percent == 300 and not more.regressed


def test_less_throughput_beyond_the_allowed_percentage_is_a_regression() -> None:
    change = measure_change(Metric.RPS, 20, 10, max_regression=20, tolerance_ms=5)
    assert change.regressed
    assert change.describe() == "throughput regressed from 20.0 req/s to 10.0 req/s (-50.0%)"


@pytest.mark.parametrize("metric", [Metric.P95, Metric.RPS])
def test_a_zero_baseline_has_no_percentage_and_is_no_regression(metric: Metric) -> None:
    change = measure_change(metric, 0, 50, max_regression=20, tolerance_ms=0)
    assert change.percent is None and not change.regressed
    assert "went from 0" in change.describe()


def test_without_a_baseline_nothing_is_compared() -> None:
    comparison = compared(stats(), None)
    assert comparison.note == NO_BASELINE
    assert comparison.changes == () and comparison.regressions == ()


def test_compares_p95_p99_and_throughput_with_the_baseline() -> None:
    comparison = compared(stats(row("Aggregated", requests=2000, p95_ms=100, rps=21)), baseline())
    assert comparison.note == "compared with the previous result (release r-7)"
    assert comparison.baseline_release == "r-7"
    assert [change.metric for change in comparison.changes] == [Metric.P95, Metric.P99, Metric.RPS]
    assert [change.metric for change in comparison.regressions] == [Metric.P95]
    assert change_lines(comparison)[0] == "  ✗ p95 regressed from 40 ms to 100 ms (+150.0%)"


def test_a_baseline_made_with_another_load_is_not_compared() -> None:
    other_users = SETTINGS.model_copy(update={"users": 50})
    other_file = SETTINGS.model_copy(update={"locustfile_sha256": "cd"})
    slow_now = stats(row("Aggregated", p95_ms=999))
    by_users = compared(
        slow_now, BaselineReport.model_validate(baseline_report(settings=other_users))
    )
    by_file = compared(
        slow_now, BaselineReport.model_validate(baseline_report(settings=other_file))
    )
    assert by_users.note == (
        "not compared: the previous result (release r-7) ran 50 users spawned at 10/s"
    )
    assert by_file.note.endswith("ran another locustfile")
    assert by_users.changes == by_file.changes == ()


def test_the_baseline_is_this_jobs_report_and_unreadable_ones_are_skipped() -> None:
    reports = [
        b"not json",
        json.dumps({"job": JOB}).encode(),  # an older report without totals
        json.dumps(baseline_report(job="perf-search", rps=99)).encode(),
        json.dumps(baseline_report(rps=42)).encode(),
    ]
    found = read_baseline(reports, JOB)
    assert found is not None and found.totals.rps == 42
    assert read_baseline(reports[:3], JOB) is None


# -- the verdict ----------------------------------------------------------------------------


def verdict_of(now: LoadStats, thresholds: PerfThresholds | None = None, **totals: float) -> Any:
    before = baseline(**totals) if totals else None
    return judge(now, thresholds or PerfThresholds(), compared(now, before), max_regression=20)


def test_a_run_within_its_thresholds_and_the_baseline_passes() -> None:
    verdict = verdict_of(stats(), PerfThresholds(p95=0.1), p95_ms=38, p99_ms=79, rps=20)
    assert verdict.passed and verdict.reasons == ()


def test_each_broken_threshold_and_regression_is_a_reason() -> None:
    verdict = verdict_of(stats(), PerfThresholds(p95=0.01, min_rps=30), rps=40)
    assert not verdict.passed
    assert verdict.reasons == (
        "p95 40 ms exceeds the threshold 10 ms",
        "throughput 20.0 req/s is below the minimum 30.0 req/s",
        "throughput regressed from 40.0 req/s to 20.0 req/s (-50.0%), beyond the allowed 20%",
    )


def test_a_failing_error_rate_names_the_most_common_error() -> None:
    errors = [
        {"method": "GET", "name": "/", "error": "ConnectionResetError", "occurrences": 1},
        {"method": "POST", "name": "/api/products", "error": "HTTPError(500)", "occurrences": 9},
    ]
    now = stats(row("Aggregated", requests=100, failures=10), errors=errors)
    (reason,) = verdict_of(now).reasons
    assert reason == (
        "error rate 10.00% exceeds the threshold 1.00% "
        "(most often: POST /api/products: HTTPError(500), 9x)"
    )


def test_no_request_at_all_fails_even_without_thresholds() -> None:
    idle = stats(row("Aggregated", requests=0, p95_ms=0, p99_ms=0, rps=0), endpoints=[])
    verdict = verdict_of(idle, PerfThresholds(error_rate=None))
    assert verdict.reasons == ("Locust made no request: the locustfile's users did nothing",)


def test_exceptions_in_the_locustfile_fail_the_run() -> None:
    raised = [{"count": 4, "message": "KeyError('id')"}, {"count": 1, "message": "ValueError()"}]
    (reason,) = verdict_of(stats(exceptions=raised)).reasons
    assert reason == "the locustfile raised 5 exception(s), first: KeyError('id')"


# -- showing it -----------------------------------------------------------------------------


def test_the_table_aligns_every_endpoint_and_the_total() -> None:
    now = stats(row("Aggregated", method="", requests=100, failures=3, rps=20.04))
    lines = stats_table(now)
    assert lines[0].split() == [
        "Method", "Name", "Requests", "Failed", "p50", "ms", "p95", "ms", "p99", "ms", "Max", "ms",
        "Req/s",
    ]  # fmt: skip
    assert lines[2].split()[:3] == ["GET", "/api/products/[id]", "40"]
    assert lines[-1].split() == ["Total", "100", "3", "(3.0%)", "10", "40", "80", "96", "20.0"]
    # Columns line up: every row ends its requests column where the header does.
    end = lines[0].index("Requests") + len("Requests")
    assert {line[end - 3 : end] for line in lines[1:]} == {" 60", " 40", "100"}


def test_the_report_holds_everything_and_reads_back_as_the_next_baseline() -> None:
    now = stats()
    thresholds = PerfThresholds(p95=0.2)
    verdict: PerfVerdict = verdict_of(now, thresholds, rps=19)
    target = Target("http://127.0.0.1:8080", "staging", "r-8", "sha256:feed")
    report = perf_report(
        job=JOB,
        target=target,
        settings=SETTINGS,
        stats=now,
        thresholds=thresholds,
        max_regression=20,
        verdict=verdict,
    )
    content = json.loads(report.to_bytes())
    assert content["target"] == {
        "url": "http://127.0.0.1:8080",
        "environment": "staging",
        "release_id": "r-8",
        "digest": "sha256:feed",
    }
    assert content["totals"]["requests"] == 100 and content["totals"]["p99_ms"] == 80
    assert [endpoint["name"] for endpoint in content["endpoints"]] == [
        "/api/products",
        "/api/products/[id]",
    ]
    assert content["thresholds"]["limits"]["p95"] == 0.2
    assert {check["metric"]: check["passed"] for check in content["thresholds"]["checks"]} == {
        "p95": True,
        "error_rate": True,
    }
    assert content["comparison"]["baseline_release"] == "r-7"
    assert content["comparison"]["changes"][2]["change_percent"] == pytest.approx(5.263, 0.001)
    assert content["passed"] is True and content["reasons"] == []
    assert report_summary(now, verdict) == {
        "requests": 100,
        "error_rate": 0.0,
        "p95_ms": 40,
        "rps": 20.0,
        "passed": True,
    }
    again = read_baseline([report.to_bytes()], JOB)
    assert again is not None and again.target.release_id == "r-8" and again.totals.p95_ms == 40


def test_a_percentile_of_too_few_requests_is_shown_but_never_a_regression() -> None:
    few = stats(row("Aggregated", requests=180, p95_ms=100, p99_ms=400, rps=21))
    comparison = compared(few, baseline())

    assert comparison.regressions == ()
    p95, p99, _ = comparison.changes
    assert p95.not_judged == "not judged, a p95 needs 200 requests in both runs"
    assert p99.not_judged == "not judged, a p99 needs 1000 requests in both runs"
    assert "p99 went from 80 ms to 400 ms: not judged" in p99.describe()


def test_a_p95_is_judged_once_both_runs_have_200_requests() -> None:
    enough = stats(row("Aggregated", requests=200, p95_ms=100, p99_ms=80, rps=21))
    comparison = compared(enough, baseline(requests=200))

    assert [change.metric for change in comparison.regressions] == [Metric.P95]
    assert comparison.changes[1].not_judged is not None  # p99: 1000 needed
