"""JUnit XML from pytest (xunit1) and from other runners, read into one test report."""

from __future__ import annotations

import json

import pytest

from conveyor.findings import junit

PYTEST_XML = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests">
 <testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="0.078">
  <testcase classname="tests.test_a" name="test_ok" file="tests/test_a.py" line="5"
            time="0.250"/>
  <testcase classname="tests.test_a" name="test_bad" file="tests/test_a.py" line="8"
            time="0.001">
   <failure message="AssertionError: x should be two&#10;assert 1 == 2">def test_bad():
&gt;       helper(1)

tests/test_a.py:10:
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _

    def helper(x):
&gt;       assert x == 2, "x should be two"
E       AssertionError: x should be two

tests/helpers.py:4: AssertionError</failure>
  </testcase>
  <testcase classname="tests.test_a.TestK" name="test_p[a b]" file="tests/test_a.py"
            line="12" time="0.900"/>
  <testcase classname="tests.test_a" name="test_skip" file="tests/test_a.py" line="16"
            time="5.000">
   <skipped type="pytest.skip" message="nope">tests/test_a.py:17: nope</skipped>
  </testcase>
  <testcase classname="tests.test_a" name="test_err" file="tests/test_a.py" line="24"
            time="0.010">
   <error message="failed on setup with &quot;RuntimeError: fixture broke&quot;">
tests/test_a.py:23: RuntimeError</error>
  </testcase>
 </testsuite>
</testsuites>
"""

# jest-junit's shape: nested suites, no file, the message in the text only.
JEST_XML = b"""<testsuites name="jest tests" tests="3" failures="1" time="1.5">
 <testsuite name="cart" tests="3" failures="1" time="1.5">
  <testcase classname="cart adds items" name="cart adds items" time="0.5"/>
  <testcase classname="cart totals" name="cart totals" time="0.75">
   <failure>Error: expected 3 to be 4
    at Object.&lt;anonymous&gt; (src/cart.test.js:14:5)</failure>
  </testcase>
  <testcase classname="cart empties" name="cart empties" time="0.25"><skipped/></testcase>
 </testsuite>
</testsuites>
"""


def by_name(report: junit.TestReport) -> dict[str, junit.TestCase]:
    return {case.name: case for case in report.cases}


def test_pytest_cases_get_node_ids_one_based_lines_and_outcomes() -> None:
    report = junit.parse_junit(PYTEST_XML, zero_based_lines=True)
    cases = by_name(report)
    assert [c.id for c in report.cases] == [
        "tests/test_a.py::test_ok",
        "tests/test_a.py::test_bad",
        "tests/test_a.py::TestK::test_p[a b]",
        "tests/test_a.py::test_skip",
        "tests/test_a.py::test_err",
    ]
    assert cases["test_ok"].line == 6
    assert cases["test_bad"].outcome is junit.Outcome.FAILED
    assert cases["test_err"].outcome is junit.Outcome.ERROR
    assert cases["test_skip"].outcome is junit.Outcome.SKIPPED
    assert cases["test_bad"].message == "AssertionError: x should be two\nassert 1 == 2"
    assert report.duration == pytest.approx(0.078)
    assert report.totals == junit.TestTotals(passed=2, failed=1, errors=1, skipped=1)


def test_a_failure_is_located_where_it_crashed_else_where_the_test_is() -> None:
    cases = by_name(junit.parse_junit(PYTEST_XML, zero_based_lines=True))
    assert cases["test_bad"].headline == "AssertionError: x should be two"
    assert cases["test_ok"].headline == "passed"
    assert cases["test_bad"].location == "tests/helpers.py:4"
    assert cases["test_err"].location == "tests/test_a.py:23"
    assert cases["test_ok"].location == "tests/test_a.py:6"


def test_other_runners_use_classname_and_name_and_the_first_line_as_message() -> None:
    report = junit.parse_junit(JEST_XML)
    totals = report.totals
    failed = report.failures()
    assert (totals.passed, totals.failed, totals.skipped, totals.total) == (1, 1, 1, 3)
    assert [c.id for c in failed] == ["cart totals::cart totals"]
    assert failed[0].message == "Error: expected 3 to be 4"
    assert failed[0].file is None
    assert failed[0].location == "cart totals::cart totals"
    assert report.duration == 1.5


def test_a_lone_testsuite_without_times_sums_its_cases() -> None:
    xml = b"""<testsuite name="go"><testcase classname="pkg" name="TestA" time="0.5"/>
              <testcase classname="pkg" name="TestB" time="1.25"/></testsuite>"""
    report = junit.parse_junit(xml)
    assert [c.id for c in report.cases] == ["pkg::TestA", "pkg::TestB"]
    assert report.duration == 1.75


def test_surefire_flaky_failures_count_as_flaky_passes() -> None:
    xml = b"""<testsuite name="s" time="1"><testcase classname="a.B" name="t" time="1">
      <flakyFailure message="boom" type="java.lang.AssertionError"/></testcase></testsuite>"""
    case = junit.parse_junit(xml).cases[0]
    assert (case.outcome, case.flaky, case.message) == (junit.Outcome.PASSED, True, "boom")
    assert junit.parse_junit(xml).totals == junit.TestTotals(flaky=1)


def test_a_rerun_that_passes_makes_the_failure_flaky_and_keeps_its_message() -> None:
    first = junit.parse_junit(PYTEST_XML, zero_based_lines=True)
    rerun = junit.parse_junit(
        b"""<testsuites><testsuite time="0.5">
        <testcase classname="tests.test_a" name="test_bad" file="tests/test_a.py" line="8"/>
        <testcase classname="tests.test_a" name="test_err" file="tests/test_a.py" line="24">
        <error message="still broken"/></testcase></testsuite></testsuites>""",
        zero_based_lines=True,
    )
    merged = first.with_reruns(rerun)
    cases = by_name(merged)
    assert cases["test_bad"].flaky and cases["test_bad"].outcome is junit.Outcome.PASSED
    assert cases["test_bad"].message.startswith("AssertionError: x should be two")
    assert cases["test_err"].outcome is junit.Outcome.ERROR and not cases["test_err"].flaky
    assert merged.totals == junit.TestTotals(passed=2, errors=1, skipped=1, flaky=1)
    assert [c.name for c in merged.flaky()] == ["test_bad"]


def test_slowest_leaves_out_skipped_tests() -> None:
    report = junit.parse_junit(PYTEST_XML, zero_based_lines=True)
    assert [c.name for c in report.slowest(2)] == ["test_p[a b]", "test_ok"]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"<testsuites><testsuite>", "not valid XML"),
        (b"", "not valid XML"),
        (b"<html><body/></html>", "root element is <html>"),
    ],
)
def test_what_is_not_junit_is_refused(content: bytes, error: str) -> None:
    with pytest.raises(junit.JUnitError, match=error):
        junit.parse_junit(content)


def test_the_raw_report_round_trips_through_json() -> None:
    report = junit.parse_junit(PYTEST_XML, zero_based_lines=True)
    assert junit.report_from_json(junit.report_to_json(report)) == report


def test_the_summary_lists_failures_with_locations_and_the_slowest_tests() -> None:
    summary = junit.tests_report(junit.parse_junit(PYTEST_XML, zero_based_lines=True), "t", 1)
    summary = json.loads(summary.to_bytes())
    assert summary["job"] == "t"
    assert summary["totals"] == {"passed": 2, "failed": 1, "errors": 1, "skipped": 1, "flaky": 0}
    assert summary["failures"][0] == {
        "id": "tests/test_a.py::test_bad",
        "outcome": "failed",
        "message": "AssertionError: x should be two\nassert 1 == 2",
        "location": "tests/helpers.py:4",
    }
    assert summary["slowest"] == [{"id": "tests/test_a.py::TestK::test_p[a b]", "duration": 0.9}]
