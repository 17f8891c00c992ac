"""JUnit XML, as pytest and most other test runners write it, read into one test report.

Reads pytest's dialect (with `junit_family=xunit1` it carries `file` and `line`, which
give each test a node id that pytest accepts back on the command line, for reruns) and
the generic `<testsuites>`/`<testsuite>` of other runners (jest-junit, surefire, go-junit-
report...), including surefire's `<flakyFailure>` for tests its own reruns rescued.

Parsed with the standard library: the XML is written by the project's own test run, code
the job already executes, and the bundled expat refuses entity-expansion bombs.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any, ClassVar

from conveyor.findings.reports import CaseSummary, SlowTest, TestsReport

# "tests/test_cart.py:14: AssertionError" -- pytest's crash line; other runners vary.
_LOCATION = re.compile(r"^(?P<file>[^\s:][^:\n]*\.\w+):(?P<line>\d+)(?::|$)", re.MULTILINE)
_FLAKY_TAGS = ("flakyFailure", "flakyError")


class JUnitError(ValueError):
    """The file is not JUnit XML (missing, truncated, or something else entirely)."""


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"  # an assertion failed
    ERROR = "error"  # the test could not run: a fixture or setup raised
    SKIPPED = "skipped"


@dataclass(frozen=True)
class TestCase:
    __test__: ClassVar[bool] = False  # not a pytest test class, despite the name

    id: str  # pytest's node id when the report says where the test lives
    name: str
    classname: str
    file: str | None
    line: int | None  # 1-based
    duration: float
    outcome: Outcome
    message: str = ""
    text: str = ""
    flaky: bool = False  # failed, then passed on a rerun (message/text are the failure's)

    @property
    def failed(self) -> bool:
        return self.outcome in (Outcome.FAILED, Outcome.ERROR)

    @property
    def headline(self) -> str:
        """The first line of the failure message (or the outcome, when there is none)."""
        return self.message.split("\n", 1)[0] or self.outcome.value

    @property
    def location(self) -> str:
        """Where it failed ("file:line" of the crash), else where the test is defined."""
        crash = list(_LOCATION.finditer(self.text))
        if crash:
            return f"{crash[-1]['file']}:{crash[-1]['line']}"
        if self.file:
            return f"{self.file}:{self.line}" if self.line else self.file
        return self.id


@dataclass(frozen=True)
class TestTotals:
    __test__: ClassVar[bool] = False

    passed: int = 0  # passed the first time
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    flaky: int = 0  # passed only on a rerun

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors + self.skipped + self.flaky

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class TestReport:
    __test__: ClassVar[bool] = False

    cases: tuple[TestCase, ...]
    duration: float

    @property
    def totals(self) -> TestTotals:
        counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "flaky": 0}
        for case in self.cases:
            counts[_total_key(case)] += 1
        return TestTotals(**counts)

    def failures(self) -> list[TestCase]:
        """Failed and errored tests, in report order."""
        return [case for case in self.cases if case.failed]

    def flaky(self) -> list[TestCase]:
        return [case for case in self.cases if case.flaky]

    def slowest(self, n: int = 10) -> list[TestCase]:
        ran = [case for case in self.cases if case.outcome is not Outcome.SKIPPED]
        return sorted(ran, key=lambda case: case.duration, reverse=True)[:n]

    def with_reruns(self, rerun: TestReport) -> TestReport:
        """This report after a rerun of its failures: those that passed now are flaky."""
        passed_now = {case.id for case in rerun.cases if case.outcome is Outcome.PASSED}
        cases = tuple(
            replace(case, outcome=Outcome.PASSED, flaky=True)
            if case.failed and case.id in passed_now
            else case
            for case in self.cases
        )
        return TestReport(cases=cases, duration=self.duration + rerun.duration)


def _total_key(case: TestCase) -> str:
    if case.flaky:
        return "flaky"
    return {
        Outcome.PASSED: "passed",
        Outcome.FAILED: "failed",
        Outcome.ERROR: "errors",
        Outcome.SKIPPED: "skipped",
    }[case.outcome]


def parse_junit(content: bytes, *, zero_based_lines: bool = False) -> TestReport:
    """A report from JUnit XML; `zero_based_lines` for pytest, whose `line` counts from 0."""
    try:
        root = ET.fromstring(content)  # noqa: S314 -- see the module docstring
    except ET.ParseError as error:
        raise JUnitError(f"not valid XML: {error}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise JUnitError(f"not JUnit XML: the root element is <{root.tag}>")
    offset = 1 if zero_based_lines else 0
    cases = tuple(_case(element, offset) for element in root.iter("testcase"))
    return TestReport(cases=cases, duration=_duration(root, cases))


def _case(element: ET.Element, line_offset: int) -> TestCase:
    name = element.get("name", "")
    classname = element.get("classname", "")
    file = element.get("file") or None
    line = _int(element.get("line"))
    outcome, detail = _outcome(element)
    flaky = outcome is Outcome.PASSED and detail is not None
    return TestCase(
        id=node_id(file, classname, name),
        name=name,
        classname=classname,
        file=file,
        line=line + line_offset if line is not None else None,
        duration=_float(element.get("time")),
        outcome=outcome,
        message=_message(detail),
        text=(detail.text or "").strip() if detail is not None else "",
        flaky=flaky,
    )


def _outcome(element: ET.Element) -> tuple[Outcome, ET.Element | None]:
    for tag, outcome in (
        ("failure", Outcome.FAILED),
        ("error", Outcome.ERROR),
        ("skipped", Outcome.SKIPPED),
    ):
        child = element.find(tag)
        if child is not None:
            return outcome, child
    for tag in _FLAKY_TAGS:
        child = element.find(tag)
        if child is not None:
            return Outcome.PASSED, child
    return Outcome.PASSED, None


def _message(detail: ET.Element | None) -> str:
    if detail is None:
        return ""
    # Runners without a message attribute put it on the first line of the text.
    message = detail.get("message") or (detail.text or "").strip().split("\n", 1)[0]
    return message.strip()


def node_id(file: str | None, classname: str, name: str) -> str:
    """pytest's node id (`tests/test_a.py::TestK::test_p[1]`) when `file` says where the
    test lives; otherwise `classname::name`, which identifies a test of any runner."""
    if file and file.endswith(".py"):
        module = file[: -len(".py")].replace("/", ".")
        if classname == module or classname.startswith(module + "."):
            classes = classname[len(module) :].strip(".").split(".")
            return "::".join([file, *[c for c in classes if c], name])
    return f"{classname}::{name}" if classname else name


def _duration(root: ET.Element, cases: Iterable[TestCase]) -> float:
    if root.get("time") is not None:
        return _float(root.get("time"))
    suites = root.findall("testsuite") if root.tag == "testsuites" else []
    if suites and all(s.get("time") is not None for s in suites):
        return sum(_float(s.get("time")) for s in suites)
    return sum(case.duration for case in cases)


def _float(raw: str | None) -> float:
    try:
        return float((raw or "0").replace(",", ""))
    except ValueError:
        return 0.0


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def tests_report(report: TestReport, job: str = "", slowest: int = 10) -> TestsReport:
    """The published "tests" report: counts, failures, flaky and slowest tests."""
    return TestsReport(
        job=job,
        totals=report.totals.as_dict(),
        duration=report.duration,
        failures=[_case_summary(case) for case in report.failures()],
        flaky=[_case_summary(case) for case in report.flaky()],
        slowest=[SlowTest(id=c.id, duration=c.duration) for c in report.slowest(slowest)],
    )


def _case_summary(case: TestCase) -> CaseSummary:
    return CaseSummary(
        id=case.id, outcome=case.outcome.value, message=case.message, location=case.location
    )


def report_to_json(report: TestReport) -> dict[str, Any]:
    return {"duration": report.duration, "cases": [asdict(case) for case in report.cases]}


def report_from_json(data: Mapping[str, Any]) -> TestReport:
    cases = tuple(
        TestCase(**{**case, "outcome": Outcome(case["outcome"])}) for case in data["cases"]
    )
    return TestReport(cases=cases, duration=float(data["duration"]))
