"""The `test` step running the real pytest (with pytest-cov) on small fixture projects."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import pytest

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.executors.local import LocalExecutor
from conveyor.engine.step import NoEvidence, StepContext
from conveyor.spec.gates import CoverageGate, Gates
from conveyor.steps import testing
from steps.conftest import Lines

CALC = """\
def add(a, b):
    return a + b


def halve(n):
    if n % 2:
        raise ValueError("odd")
    return n // 2
"""
CALC_TESTS = """\
import pytest
from app.calc import add, halve


def test_add():
    assert add(2, 3) == 5


def test_halve():
    assert halve(4) == 2


@pytest.mark.skip(reason="not today")
def test_later():
    pass
"""
# Fails while its marker file is missing (creating it), so it passes when run again.
FLAKY_TEST = """\
from pathlib import Path


def test_sometimes():
    marker = Path(__file__).with_name("ran-once")
    if not marker.exists():
        marker.write_text("")
        assert False, "first attempt fails"
"""
OTHER_RUNNER_XML = """\
<testsuites name="jest tests" tests="3" failures="{failures}" time="1.5">
 <testsuite name="cart" tests="3" failures="{failures}" time="1.5">
  <testcase classname="cart adds items" name="cart adds items" time="0.5"/>
  <testcase classname="cart totals" name="cart totals" time="0.75">{failure}</testcase>
  <testcase classname="cart empties" name="cart empties" time="0.25"><skipped/></testcase>
 </testsuite>
</testsuites>
"""
JEST_FAILURE = """<failure>Error: expected 3 to be 4
    at Object.&lt;anonymous&gt; (src/cart.test.js:14:5)</failure>"""


class BaselineEvidence(NoEvidence):
    """Evidence whose target branch published `reports` (kind -> contents)."""

    def __init__(self, gates: Gates | None = None, **reports: list[bytes]) -> None:
        super().__init__(gates)
        self.reports = reports

    def baseline(self, kind: str) -> list[bytes]:
        return self.reports.get(kind, [])


@dataclass
class Outcome:
    ran: ExecResult
    result: ExecResult
    log: Lines
    evidence: NoEvidence

    def report(self, kind: str) -> Any:
        return json.loads(next(c for k, c, _ in self.evidence.published if k == kind))

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.evidence.published]


def project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    # A pytest.ini of its own, so pytest takes this folder for the rootdir.
    for name, content in {"pytest.ini": "[pytest]\n", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(content))
    return root


def shop(tmp_path: Path, **extra: str) -> Path:
    files = {
        "app/__init__.py": "",
        "app/calc.py": CALC,
        "tests/__init__.py": "",
        "tests/test_calc.py": CALC_TESTS,
        **extra,
    }
    return project(tmp_path / "shop", files)


def run_test_step(workspace: Path, evidence: NoEvidence | None = None, **params: Any) -> Outcome:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {"PATH": path, "HOME": str(workspace), "LANG": "C.UTF-8"}
    log, evidence = Lines(), evidence or NoEvidence()
    ctx = StepContext(
        job_id="test",
        workspace=workspace,
        env=env,
        timeout=60,
        executor=LocalExecutor(),
        log=log,
        evidence=evidence,
    )
    step, model = testing.TestStep(), testing.TestParams(**params)

    async def both() -> tuple[ExecResult, ExecResult]:
        ran = await step.run(model, ctx)
        return ran, await step.finalize(model, ctx, ran)

    ran, result = asyncio.run(both())
    return Outcome(ran, result, log, evidence)


def test_passing_tests_pass_with_counts_and_coverage_per_file(tmp_path: Path) -> None:
    outcome = run_test_step(shop(tmp_path), source=["app"])
    assert outcome.result.ok, outcome.result.detail
    tests = outcome.report("tests")
    assert tests["totals"] == {"passed": 2, "failed": 0, "errors": 0, "skipped": 1, "flaky": 0}
    assert {s["id"] for s in tests["slowest"]} == {
        "tests/test_calc.py::test_add",
        "tests/test_calc.py::test_halve",
    }
    coverage = outcome.report("coverage")
    assert coverage["files"] == {"app/__init__.py": 100.0, "app/calc.py": pytest.approx(500 / 6)}
    assert coverage["job"] == "test"
    assert outcome.report("gate")["passed"] is True
    assert "2 passed, 0 failed, 0 errors, 1 skipped, 0 flaky" in outcome.log.text
    assert "coverage: 83.3% total" in outcome.log.text


def test_a_failing_test_blocks_with_its_message_and_location(tmp_path: Path) -> None:
    failing = "from app.calc import add\n\n\ndef test_add_wrong():\n    assert add(2, 2) == 5\n"
    outcome = run_test_step(shop(tmp_path, **{"tests/test_wrong.py": failing}))
    assert outcome.ran.ok  # the runner worked; the gate blocks
    assert not outcome.result.ok
    assert "tests/test_wrong.py::test_add_wrong at tests/test_wrong.py:5" in outcome.result.detail
    assert "assert 4 == 5" in outcome.result.detail
    assert outcome.report("tests")["failures"] == [
        {
            "id": "tests/test_wrong.py::test_add_wrong",
            "outcome": "failed",
            "message": "assert 4 == 5\n +  where 4 = add(2, 2)",
            "location": "tests/test_wrong.py:5",
        }
    ]
    assert outcome.report("gate")["passed"] is False
    assert "✗ failed tests/test_wrong.py::test_add_wrong at tests/test_wrong.py:5" in (
        outcome.log.text
    )


def test_a_flaky_test_is_reported_and_does_not_block_by_default(tmp_path: Path) -> None:
    outcome = run_test_step(shop(tmp_path, **{"tests/test_flaky.py": FLAKY_TEST}))
    assert outcome.result.ok, outcome.result.detail
    tests = outcome.report("tests")
    assert tests["totals"]["flaky"] == 1 and tests["totals"]["failed"] == 0
    assert tests["flaky"][0]["id"] == "tests/test_flaky.py::test_sometimes"
    assert "first attempt fails" in tests["flaky"][0]["message"]
    assert "~ flaky tests/test_flaky.py::test_sometimes" in outcome.log.text


def test_a_flaky_test_blocks_with_fail_on_flaky(tmp_path: Path) -> None:
    outcome = run_test_step(
        shop(tmp_path, **{"tests/test_flaky.py": FLAKY_TEST}), fail_on_flaky=True
    )
    assert not outcome.result.ok
    assert "1 test flaky (fail_on_flaky)" in outcome.result.detail


def test_without_reruns_a_flaky_test_is_a_failure(tmp_path: Path) -> None:
    outcome = run_test_step(shop(tmp_path, **{"tests/test_flaky.py": FLAKY_TEST}), rerun_failures=0)
    assert not outcome.result.ok
    assert outcome.report("tests")["totals"]["failed"] == 1


def test_coverage_below_min_coverage_blocks_and_names_the_files(tmp_path: Path) -> None:
    outcome = run_test_step(shop(tmp_path), source=["app"], min_coverage=95)
    assert not outcome.result.ok
    assert "coverage 83.3% is below the floor of 95%" in outcome.result.detail
    assert "below 95%: app/calc.py 83.3%" in outcome.log.text


def test_a_drop_beyond_max_drop_against_the_baseline_blocks(tmp_path: Path) -> None:
    baseline = json.dumps({"job": "test", "total_percent": 90.0, "files": {}}).encode()
    evidence = BaselineEvidence(Gates(coverage=CoverageGate(max_drop=2)), coverage=[baseline])
    outcome = run_test_step(shop(tmp_path), evidence, source=["app"])
    assert not outcome.result.ok
    assert "coverage dropped 6.7 points (90.0% -> 83.3%), more than max_drop 2" in (
        outcome.result.detail
    )
    # A looser max_drop of the job's own overrides the gates' default.
    evidence = BaselineEvidence(Gates(coverage=CoverageGate(max_drop=2)), coverage=[baseline])
    assert run_test_step(shop(tmp_path / "again"), evidence, source=["app"], max_drop=7).result.ok


def test_the_baseline_of_another_job_is_not_compared(tmp_path: Path) -> None:
    mine = json.dumps({"job": "test", "total_percent": 84.0, "files": {}}).encode()
    other = json.dumps({"job": "test-slow", "total_percent": 99.0, "files": {}}).encode()
    outcome = run_test_step(
        shop(tmp_path), BaselineEvidence(coverage=[other, mine]), source=["app"], max_drop=1
    )
    assert outcome.result.ok, outcome.result.detail
    assert "(baseline 84.0%)" in outcome.log.text
    alone = run_test_step(
        shop(tmp_path / "alone"), BaselineEvidence(coverage=[other]), source=["app"], max_drop=1
    )
    assert alone.result.ok, alone.result.detail
    assert "no baseline coverage from the target branch" in alone.log.text


def test_a_conftest_that_does_not_load_is_a_crash_with_the_stderr_tail(tmp_path: Path) -> None:
    outcome = run_test_step(shop(tmp_path, **{"conftest.py": "def broken(:\n    pass\n"}))
    assert not outcome.ran.ok and outcome.result == outcome.ran
    assert outcome.ran.exit_code == 4
    assert "pytest could not start" in outcome.ran.detail
    assert "SyntaxError" in outcome.ran.detail
    assert outcome.evidence.published == []


def test_a_bad_option_is_a_crash(tmp_path: Path) -> None:
    command = ["python", "-m", "pytest", "--no-such-option"]
    outcome = run_test_step(shop(tmp_path), command=command)
    assert not outcome.result.ok
    assert "unrecognized arguments: --no-such-option" in outcome.result.detail


def test_pytest_failing_the_session_after_passing_tests_fails(tmp_path: Path) -> None:
    command = ["python", "-m", "pytest", "-q", "--cov-fail-under=100"]
    outcome = run_test_step(shop(tmp_path), command=command, source=["app"])
    assert not outcome.result.ok
    assert "pytest exited 1, yet its JUnit report records no failed test" in (outcome.result.detail)
    assert "Required test coverage of 100% not reached" in outcome.result.detail


def test_no_tests_collected_fails(tmp_path: Path) -> None:
    outcome = run_test_step(project(tmp_path / "empty", {"app.py": "X = 1\n"}))
    assert not outcome.result.ok
    assert outcome.result.exit_code == 5
    assert "no tests ran" in outcome.result.detail


def test_a_cache_hit_decides_again_from_the_kept_results(tmp_path: Path) -> None:
    workspace = shop(tmp_path)
    run_test_step(workspace, source=["app"])
    ctx_log, evidence = Lines(), NoEvidence(Gates(coverage=CoverageGate(min=99)))
    ctx = StepContext(
        job_id="test",
        workspace=workspace,
        env={},
        timeout=10,
        executor=LocalExecutor(),
        log=ctx_log,
        evidence=evidence,
    )
    params = testing.TestParams(source=["app"])
    result = asyncio.run(testing.TestStep().finalize(params, ctx, None))
    assert not result.ok
    assert "below the floor of 99%" in result.detail


def other_runner(tmp_path: Path, failures: int) -> Path:
    xml = OTHER_RUNNER_XML.format(failures=failures, failure=JEST_FAILURE if failures else "")
    return project(tmp_path / "js", {"fixtures/results.xml": xml})


def test_another_runners_junit_is_accepted(tmp_path: Path) -> None:
    command = ["mkdir -p reports", "cp fixtures/results.xml reports/junit.xml"]
    outcome = run_test_step(other_runner(tmp_path, 0), junit="reports/junit.xml", command=command)
    assert outcome.result.ok, outcome.result.detail
    assert outcome.report("tests")["totals"]["passed"] == 2
    assert "coverage" not in outcome.kinds()


def test_another_runners_failure_blocks_with_its_message(tmp_path: Path) -> None:
    command = ["mkdir -p reports", "cp fixtures/results.xml reports/junit.xml", "exit 1"]
    outcome = run_test_step(other_runner(tmp_path, 1), junit="reports/junit.xml", command=command)
    assert not outcome.result.ok
    assert "cart totals::cart totals at cart totals::cart totals: Error: expected 3 to be 4" in (
        outcome.result.detail
    )


def test_a_junit_file_the_command_did_not_write_is_not_trusted(tmp_path: Path) -> None:
    outcome = run_test_step(
        other_runner(tmp_path, 0), junit="fixtures/results.xml", command=["echo 'ran nothing' >&2"]
    )
    assert not outcome.result.ok
    assert "did not write fixtures/results.xml (exit 0): ran nothing" in outcome.result.detail


def test_a_failing_command_whose_junit_shows_no_failure_fails(tmp_path: Path) -> None:
    command = ["cp fixtures/results.xml out.xml", "echo 'lint broke' >&2", "exit 3"]
    outcome = run_test_step(other_runner(tmp_path, 0), junit="out.xml", command=command)
    assert not outcome.result.ok
    assert "exited 3, yet out.xml records no failed test: lint broke" in outcome.result.detail


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"junit": "out.xml"}, "needs the `command:`"),
        ({"junit": "out.xml", "command": ["x"], "min_coverage": 80}, "coverage is measured only"),
        ({"junit": "../out.xml", "command": ["x"]}, "inside the workspace"),
        ({"rerun_failures": 9}, "less than or equal to 5"),
    ],
)
def test_parameters_that_cannot_work_are_refused(params: dict[str, Any], error: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=error):
        testing.TestParams(**params)
