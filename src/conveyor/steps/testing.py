"""The `test` step: run the tests, read their JUnit XML, rerun failures, gate on the result.

`run` (cached): by default `python -m pytest -q`, writing JUnit XML and (with pytest-cov)
coverage.py JSON into `.conveyor-out/<job>/`. Failed tests are rerun by node id, up to
`rerun_failures` times; one that passes on a rerun is flaky. The merged report is written
there as `tests.json`. Any other runner works through `junit:` (where its command writes
JUnit XML) and `command:` (lines of a bash script). A runner that crashed, wrote no
report, or ran no test fails the job: none of those is a pass.

`finalize` (never cached) applies `gates.tests` and `gates.coverage` (with this job's
overrides), comparing coverage with the target branch's last successful run, publishes
the "tests", "coverage" and "gate" reports, and logs what failed, where, and why.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import RAW_DIR, StepContext, ToolRun, failed, passed
from conveyor.errors import ConveyorError
from conveyor.findings import coverage as cov
from conveyor.findings.gate import GateDecision
from conveyor.findings.junit import JUnitError, TestCase, TestReport, parse_junit, tests_report
from conveyor.findings.junit import report_from_json as tests_from_json
from conveyor.findings.junit import report_to_json as tests_to_json
from conveyor.findings.reports import CoverageDocument, GateReport
from conveyor.spec.gates import CoverageGate, Gates, TestsGate
from conveyor.spec.types import WorkspacePath
from conveyor.steps.findings_step import raw_findings_path
from conveyor.steps.project_env import ProjectEnv, VenvParams, ensure_project_env

PYTEST = ["python", "-m", "pytest", "-q"]
NO_TESTS_COLLECTED = 5  # pytest's exit code when it found no test
_PYTEST_TROUBLE = {
    2: "was interrupted (often: a test module failed to import)",
    3: "hit an internal error",
    4: "could not start (a bad option, or a conftest.py that failed to load)",
}
_SHOWN_SLOWEST = 5
T = TypeVar("T")


class TestParams(BaseModel):
    __test__: ClassVar[bool] = False  # not a pytest test class, despite the name
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description="pytest's command line (default: python -m pytest -q); with `junit:`, "
        "the lines of a bash script that writes the JUnit XML.",
    )
    junit: WorkspacePath | None = Field(
        default=None, description="Read this JUnit XML (any runner's) instead of running pytest."
    )
    coverage: bool = Field(default=True, description="Measure line coverage with pytest-cov.")
    source: list[str] = Field(default_factory=lambda: ["."], min_length=1)
    rerun_failures: int = Field(default=1, ge=0, le=5, description="Reruns of failed tests.")
    min_coverage: float | None = Field(default=None, ge=0, le=100)
    max_drop: float | None = Field(default=None, ge=0, le=100)
    fail_on_flaky: bool | None = None
    venv: VenvParams | None = Field(
        default=None,
        description="Run in the project's own virtualenv, built from these dependency files "
        "and kept by their digest under the state folder; none: `python` from the job's PATH.",
    )

    @model_validator(mode="after")
    def _modes(self) -> TestParams:
        if self.junit is None:
            return self
        if self.command is None:
            raise ValueError("`junit:` needs the `command:` that writes it")
        if (
            self.min_coverage is not None
            or self.max_drop is not None
            or (self.coverage and "coverage" in self.model_fields_set)
        ):
            raise ValueError("coverage is measured only when conveyor runs pytest (no `junit:`)")
        return self

    @property
    def measures_coverage(self) -> bool:
        return self.coverage and self.junit is None


class RunnerFailed(Exception):
    """The runner crashed, wrote no usable report, or ran no test."""

    def __init__(self, result: ExecResult) -> None:
        super().__init__(result.detail)
        self.result = result


def raw_dir(job_id: str) -> str:
    return Path(raw_findings_path(job_id)).parent.as_posix()


class TestStep:
    __test__: ClassVar[bool] = False
    name: ClassVar[str] = "test"
    params_model: ClassVar[type[BaseModel]] = TestParams
    version: ClassVar[str] = "1"

    def describe(self, params: BaseModel) -> str:
        return f"{self.name} {params.model_dump_json()}"

    def outputs(self, params: BaseModel) -> list[str]:
        assert isinstance(params, TestParams)
        # Each pattern must match a file: coverage.json exists only when it is measured.
        names = ["tests.json", "junit*.xml"]
        if params.measures_coverage:
            names.insert(1, "coverage.json")
        return [f"{RAW_DIR}/**/{name}" for name in names]

    async def run(self, params: BaseModel, ctx: StepContext) -> ExecResult:
        assert isinstance(params, TestParams)
        started = time.monotonic()
        out = ctx.workspace / raw_dir(ctx.job_id)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        try:
            params, ctx = await _in_environment(params, ctx)
            if params.junit is not None:
                report = await run_other(params, ctx)
            else:
                report = await run_pytest(params, ctx)
        except RunnerFailed as error:
            ctx.say(error.result.detail)
            return replace(error.result, duration=time.monotonic() - started)
        (out / "tests.json").write_text(json.dumps(tests_to_json(report), indent=1))
        return passed(time.monotonic() - started)

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        assert isinstance(params, TestParams)
        if ran is not None and not ran.ok:
            return ran
        out = ctx.workspace / raw_dir(ctx.job_id)
        report = _read(out / "tests.json", ctx, lambda raw: tests_from_json(json.loads(raw)))
        coverage = (
            _read(out / "coverage.json", ctx, cov.parse_coverage_py)
            if params.measures_coverage
            else None
        )
        baseline = baseline_coverage(ctx) if coverage is not None else None
        floor = coverage_policy(params, ctx.evidence.gates)
        decision = decide_tests(
            self.name,
            report,
            coverage=coverage,
            baseline=baseline,
            tests=tests_policy(params, ctx.evidence.gates),
            floor=floor,
        )
        self._publish(ctx, report, coverage, decision)
        log_summary(ctx, report, coverage, baseline, floor)
        if coverage is None and _has_coverage_gate(floor):
            ctx.say("  coverage gate not applied: this job does not measure coverage")
        for reason in decision.reasons:
            ctx.say(f"  ✗ {reason}")
        ctx.say(decision.summary())
        if decision.passed:
            return passed(detail=decision.summary())
        return failed(f"{decision.summary()}: {decision.reasons[0]}")

    def _publish(
        self,
        ctx: StepContext,
        report: TestReport,
        coverage: cov.CoverageReport | None,
        decision: GateDecision,
    ) -> None:
        totals = report.totals.as_dict()
        ctx.evidence.publish("tests", tests_report(report, ctx.job_id).to_bytes(), totals)
        if coverage is not None:
            content = CoverageDocument(job=ctx.job_id, **coverage.to_json())
            ctx.evidence.publish(
                "coverage",
                content.to_bytes(),
                {"total_percent": round(coverage.total_percent, 2)},
            )
        ctx.evidence.publish(
            "gate",
            GateReport(job=ctx.job_id, **asdict(decision)).to_bytes(),
            {"gate": decision.gate, "passed": decision.passed},
        )


async def _in_environment(params: TestParams, ctx: StepContext) -> tuple[TestParams, StepContext]:
    """The parameters and context to run the tests with: in the project's virtualenv when
    `venv:` says so (its python first on PATH), else the job's PATH; the log says which."""
    if params.venv is None:
        python = ctx.which((params.command or PYTEST)[0]) or "not found"
        ctx.say(
            f"{ctx.job_id}: runs {(params.command or PYTEST)[0]} from the job's PATH ({python})"
        )
        return params, ctx
    required = [] if params.junit is not None else ["pytest"]
    if params.measures_coverage:
        required.append("pytest-cov")
    project: ProjectEnv = await ensure_project_env(params.venv, ctx, required)
    command = project.command(list(params.command or PYTEST))
    scoped = replace(ctx, env=project.env(ctx.env))
    return params.model_copy(update={"command": command}), scoped


async def run_pytest(params: TestParams, ctx: StepContext) -> TestReport:
    out = raw_dir(ctx.job_id)
    command = params.command or PYTEST
    argv = [*command, *_junit_args(f"{out}/junit.xml")]
    if params.coverage:
        argv += [f"--cov={source}" for source in params.source]
        argv.append(f"--cov-report=json:{out}/coverage.json")
    tool = await ctx.run_tool(argv)
    _check_pytest_exit(tool)
    report = _parse(ctx.workspace / out / "junit.xml", tool, "pytest", zero_based=True)
    if tool.result.exit_code != 0 and not report.failures():
        # e.g. --cov-fail-under, or a plugin failing the session after the tests passed
        raise RunnerFailed(_unexplained_exit(tool, "pytest", "its JUnit report"))
    if params.coverage and not (ctx.workspace / out / "coverage.json").exists():
        raise RunnerFailed(failed(f"pytest-cov wrote no coverage report: {_tail(tool)}"))
    for attempt in range(1, params.rerun_failures + 1):
        failing = [case for case in report.failures() if case.file]
        if not failing:
            break
        rerun = await _rerun(params, ctx, failing, attempt)
        if rerun is None:
            break
        report = report.with_reruns(rerun)
    return report


def _junit_args(path: str) -> list[str]:
    # xunit1 adds each test's file and line: its node id, for reruns and locations.
    return ["-o", "junit_family=xunit1", f"--junitxml={path}"]


def _check_pytest_exit(tool: ToolRun) -> None:
    code = tool.result.exit_code
    if code is None:  # timed out or killed: keep the executor's verdict
        raise RunnerFailed(replace(tool.result, detail=f"pytest {tool.result.detail}"))
    if code == NO_TESTS_COLLECTED:
        raise RunnerFailed(failed("no tests ran: pytest collected no tests", exit_code=code))
    if code not in (0, 1):
        trouble = _PYTEST_TROUBLE.get(code, "failed")
        raise RunnerFailed(failed(f"pytest {trouble} (exit {code}): {_tail(tool)}", exit_code=code))


async def _rerun(
    params: TestParams, ctx: StepContext, failing: list[TestCase], attempt: int
) -> TestReport | None:
    """The failed tests run again by node id; None when the rerun itself went wrong."""
    path = f"{raw_dir(ctx.job_id)}/junit-rerun-{attempt}.xml"
    argv = [*_pytest_only(params.command or PYTEST), "-q", *_junit_args(path)]
    if params.coverage:
        argv.append("--no-cov")  # the first run's coverage is the one that counts
    ctx.say(f"test: rerunning {len(failing)} failed tests (attempt {attempt})")
    tool = await ctx.run_tool([*argv, *(case.id for case in failing)])
    try:
        _check_pytest_exit(tool)
        return _parse(ctx.workspace / path, tool, "pytest", zero_based=True)
    except RunnerFailed as error:
        ctx.say(f"test: the rerun did not run cleanly, the failures stand: {error.result.detail}")
        return None


def _pytest_only(command: list[str]) -> list[str]:
    """The command up to `pytest` itself: its own paths would run every test again."""
    for index, part in enumerate(command):
        if Path(part).name in ("pytest", "py.test"):
            return command[: index + 1]
    return command


async def run_other(params: TestParams, ctx: StepContext) -> TestReport:
    """Another runner: its command writes JUnit XML at `junit`, which must be fresh."""
    assert params.junit is not None and params.command is not None
    path = ctx.workspace / params.junit
    before = _stamp(path)
    tool = await ctx.run_tool(["bash", "-e", "-o", "pipefail", "-c", "\n".join(params.command)])
    code = tool.result.exit_code
    if code is None:
        raise RunnerFailed(tool.result)
    if _stamp(path) is None or _stamp(path) == before:
        raise RunnerFailed(
            failed(
                f"the command did not write {params.junit} (exit {code}): {_tail(tool)}",
                exit_code=code,
            )
        )
    report = _parse(path, tool, "the test command")
    if code != 0 and not report.failures():
        raise RunnerFailed(_unexplained_exit(tool, "the test command", params.junit))
    if report.failures() and params.rerun_failures:
        ctx.say("test: failed tests are rerun only under pytest; these stand as they are")
    return report


def _unexplained_exit(tool: ToolRun, runner: str, report: str) -> ExecResult:
    code = tool.result.exit_code
    detail = f"{runner} exited {code}, yet {report} records no failed test: {_tail(tool)}"
    return failed(detail, exit_code=code)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _parse(path: Path, tool: ToolRun, runner: str, *, zero_based: bool = False) -> TestReport:
    try:
        report = parse_junit(path.read_bytes(), zero_based_lines=zero_based)
    except (OSError, JUnitError) as error:
        raise RunnerFailed(
            failed(f"{runner} left no readable JUnit report ({error}): {_tail(tool)}")
        ) from None
    if not report.cases:
        raise RunnerFailed(failed(f"no tests ran: the JUnit report of {runner} has no test"))
    return report


def _tail(tool: ToolRun) -> str:
    lines = tool.stderr_tail or tool.stdout_tail
    return " | ".join(lines[-5:]) if lines else "no output"


def _read(path: Path, ctx: StepContext, parse: Callable[[bytes], T]) -> T:
    try:
        return parse(path.read_bytes())
    except (OSError, ValueError) as error:
        raise ConveyorError(
            f"the raw test results of {ctx.job_id} are unreadable: {error}"
        ) from None


def tests_policy(params: TestParams, gates: Gates) -> TestsGate:
    if params.fail_on_flaky is None:
        return gates.tests
    return gates.tests.model_copy(update={"fail_on_flaky": params.fail_on_flaky})


def coverage_policy(params: TestParams, gates: Gates) -> CoverageGate:
    overrides = {"min": params.min_coverage, "max_drop": params.max_drop}
    return gates.coverage.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def _has_coverage_gate(policy: CoverageGate) -> bool:
    return policy.min is not None or policy.max_drop is not None


def baseline_coverage(ctx: StepContext) -> cov.CoverageReport | None:
    """This job's coverage in the target branch's last successful run, if there is one."""
    for content in ctx.evidence.baseline("coverage"):
        try:
            if json.loads(content).get("job") == ctx.job_id:
                return cov.report_from_json(content)
        except (ValueError, AttributeError):
            continue  # another job's, or unreadable: nothing to compare with
    return None


def decide_tests(
    gate: str,
    report: TestReport,
    *,
    coverage: cov.CoverageReport | None,
    baseline: cov.CoverageReport | None,
    tests: TestsGate,
    floor: CoverageGate,
) -> GateDecision:
    reasons: list[str] = []
    failures, flaky = report.failures(), report.flaky()
    if failures and tests.fail_on_failure:
        first = failures[0]
        reasons.append(
            f"{_tests(len(failures))} failed, first {first.id} at {first.location}: "
            f"{first.headline}"
        )
    if flaky and tests.fail_on_flaky:
        reasons.append(f"{_tests(len(flaky))} flaky (fail_on_flaky), first {flaky[0].id}")
    if coverage is not None:
        reasons.extend(cov.gate_reasons(coverage, baseline, floor))
    return GateDecision(
        gate=gate, passed=not reasons, reasons=reasons, counts=report.totals.as_dict()
    )


def _tests(count: int) -> str:
    return f"{count} test" if count == 1 else f"{count} tests"


def _counts(report: TestReport) -> str:
    counts = ", ".join(f"{n} {kind}" for kind, n in report.totals.as_dict().items())
    return f"{counts} ({_tests(len(report.cases))} in {report.duration:.2f}s)"


def log_summary(
    ctx: StepContext,
    report: TestReport,
    coverage: cov.CoverageReport | None,
    baseline: cov.CoverageReport | None,
    floor: CoverageGate,
) -> None:
    ctx.say(f"tests: {_counts(report)}")
    for case in report.failures():
        ctx.say(f"  ✗ {case.outcome.value} {case.id} at {case.location}: {case.headline}")
    for case in report.flaky():
        ctx.say(f"  ~ flaky {case.id}: failed ({case.headline}), then passed on a rerun")
    slowest = ", ".join(f"{c.id} {c.duration:.2f}s" for c in report.slowest(_SHOWN_SLOWEST))
    ctx.say(f"  slowest: {slowest}")
    if coverage is None:
        return
    against = f" (baseline {baseline.total_percent:.1f}%)" if baseline is not None else ""
    ctx.say(f"coverage: {coverage.total_percent:.1f}% total{against}")
    if floor.max_drop is not None and baseline is None:
        ctx.say("  no baseline coverage from the target branch to compare with yet")
    if floor.min is not None:
        for path, percent in coverage.below(floor.min).items():
            ctx.say(f"  below {floor.min:g}%: {path} {percent:.1f}%")
