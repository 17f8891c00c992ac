"""Run a project's Playwright tests (pytest-playwright) against a URL, in the system Chromium.

The tests run as `python -m pytest` in the workspace, with the project's own pytest
configuration, plus: the target as `--base-url`, a screenshot and a trace kept for each
failed test, JUnit XML for the results, and Conveyor's small plugin (e2e_plugin.py) that
makes pytest-playwright launch the system Chromium instead of a browser of its own.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from conveyor.engine.step import StepContext, ToolRun
from conveyor.findings.junit import JUnitError, TestReport, node_id, parse_junit

# Copied into the tests' plugin folder, never imported here: it imports pytest (~60 ms),
# which the run path of a pipeline that merely names an `e2e` job does not need.
PLUGIN_SOURCE = Path(__file__).with_name("e2e_plugin.py")

CHROMIUM_COMMANDS = ("chromium", "chromium-browser")
PLUGIN_MODULE = "conveyor_e2e_browser"  # the plugin's name where the step copies it
NO_TESTS_COLLECTED = 5  # pytest's exit codes
USAGE_ERROR = 4
_PYTEST_TROUBLE = {
    2: "was interrupted (often: a test module failed to import)",
    3: "hit an internal error",
    USAGE_ERROR: "could not start (a bad option, or a conftest.py that failed to load)",
}
_PLAYWRIGHT_HINT = "is pytest-playwright installed in the Python that runs the tests?"


class RunnerFailed(Exception):
    """No usable result: the browser or pytest is missing, crashed, or ran no test."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ArtifactKind(StrEnum):
    SCREENSHOT = "screenshot"
    TRACE = "trace"
    VIDEO = "video"


@dataclass(frozen=True)
class Artifact:
    test: str  # the failed test's node id
    kind: ArtifactKind
    path: Path  # absolute
    file: str  # relative to the workspace, as the log and the report name it


@dataclass(frozen=True)
class E2eRun:
    report: TestReport
    artifacts: list[Artifact]


@dataclass(frozen=True)
class E2eLayout:
    """Where one run keeps its files, all under the job's output dir."""

    root: Path

    @property
    def junit(self) -> Path:
        return self.root / "junit-e2e.xml"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def plugins(self) -> Path:
        return self.root / "pytest-plugins"


def find_browser(ctx: StepContext, requested: str | None) -> str:
    """The Chromium executable: `requested` (a path or a command) or chromium on PATH."""
    if requested is not None:
        found = ctx.which(requested)
        if found is None:
            raise RunnerFailed(f"the browser {requested!r} is not an executable (nor on PATH)")
        return found
    for command in CHROMIUM_COMMANDS:
        found = ctx.which(command)
        if found is not None:
            return found
    raise RunnerFailed(
        "no Chromium on PATH (looked for chromium, chromium-browser): install the package "
        "`chromium` (apt-get install chromium), or name the executable in `browser:`"
    )


async def run_e2e(
    ctx: StepContext, *, tests: str, url: str, browser: str, layout: E2eLayout
) -> E2eRun:
    """Run the tests in `tests` against `url`; raises RunnerFailed without a usable result."""
    if not (ctx.workspace / tests).exists():
        raise RunnerFailed(f"the E2E tests directory {tests} does not exist in the workspace")
    shutil.rmtree(layout.root, ignore_errors=True)
    layout.plugins.mkdir(parents=True)
    shutil.copyfile(PLUGIN_SOURCE, layout.plugins / f"{PLUGIN_MODULE}.py")
    python = ctx.which("python") or ctx.which("python3")
    if python is None:
        raise RunnerFailed("no python on PATH to run pytest with")
    argv = pytest_argv(python, tests=tests, url=url, browser=browser, layout=layout)
    tool = await _with_plugins_on_path(ctx, layout).run_tool(argv)
    _check_exit(tool, tests)
    _check_driver_started(layout.junit)
    report = _read_report(layout.junit, tool)
    if tool.result.exit_code != 0 and not report.failures():
        raise RunnerFailed(
            f"pytest exited {tool.result.exit_code}, yet its JUnit report records no failed "
            f"test: {_tail(tool)}"
        )
    return E2eRun(report, artifacts_of(layout.junit.read_bytes(), ctx.workspace))


# What Playwright says when its driver (a bundled node) dies at start; on a minimal Debian 12
# that node lacks libatomic.so.1, and every test then errors with this alone.
_DRIVER_DIED = b"Connection closed while reading from the driver"


def _check_driver_started(junit: Path) -> None:
    if junit.is_file() and _DRIVER_DIED in junit.read_bytes():
        raise RunnerFailed(
            "Playwright's driver could not start (its bundled node exited): on Debian and "
            "Ubuntu it needs libatomic1 (apt-get install libatomic1)"
        )


def pytest_argv(python: str, *, tests: str, url: str, browser: str, layout: E2eLayout) -> list[str]:
    return [
        python,
        *("-m", "pytest", "-v", "--tb=short", "-p", "no:cacheprovider"),
        *("-p", PLUGIN_MODULE, "--system-browser", browser, "--browser", "chromium"),
        *("--base-url", url),
        *("--screenshot", "only-on-failure", "--tracing", "retain-on-failure"),
        *("--output", str(layout.artifacts)),
        # xunit1 adds each test's file and line: its node id and where it failed.
        *("-o", "junit_family=xunit1", f"--junitxml={layout.junit}"),
        tests,
    ]


def _with_plugins_on_path(ctx: StepContext, layout: E2eLayout) -> StepContext:
    """The context whose commands can import the copied plugin (`-p conveyor_e2e_browser`)."""
    paths = [str(layout.plugins), *filter(None, [ctx.env.get("PYTHONPATH")])]
    return dataclasses.replace(ctx, env={**ctx.env, "PYTHONPATH": os.pathsep.join(paths)})


def _check_exit(tool: ToolRun, tests: str) -> None:
    code = tool.result.exit_code
    if code is None:  # timed out or killed: the executor says which
        raise RunnerFailed(f"pytest {tool.result.detail or 'was killed'}")
    if code == NO_TESTS_COLLECTED:
        raise RunnerFailed(f"no tests ran: pytest collected no tests in {tests}")
    if code in _PYTEST_TROUBLE:
        hint = f" ({_PLAYWRIGHT_HINT})" if _unknown_option(tool) else ""
        raise RunnerFailed(f"pytest {_PYTEST_TROUBLE[code]} (exit {code}){hint}: {_tail(tool)}")
    if code not in (0, 1):
        raise RunnerFailed(f"pytest failed (exit {code}): {_tail(tool)}")


def _unknown_option(tool: ToolRun) -> bool:
    return any("unrecognized arguments" in line for line in tool.stderr_tail)


def _read_report(path: Path, tool: ToolRun) -> TestReport:
    try:
        report = parse_junit(path.read_bytes(), zero_based_lines=True)
    except (OSError, JUnitError) as error:
        raise RunnerFailed(
            f"pytest left no readable JUnit report ({error}): {_tail(tool)}"
        ) from None
    if not report.cases:
        raise RunnerFailed("no tests ran: the JUnit report has no test")
    return report


def artifacts_of(junit: bytes, workspace: Path) -> list[Artifact]:
    """The screenshots, traces and videos pytest-playwright kept, per test.

    pytest-playwright records each kept file as a `playwright_<kind>` property of its
    test case, relative to the directory pytest ran in when the file is inside it.
    """
    root = ET.fromstring(junit)  # noqa: S314 -- written by this run; see findings/junit.py
    found: list[Artifact] = []
    for case in root.iter("testcase"):
        test = node_id(case.get("file"), case.get("classname", ""), case.get("name", ""))
        for prop in case.iter("property"):
            kind = _artifact_kind(prop.get("name", ""))
            value = prop.get("value")
            if kind is None or not value:
                continue
            path = Path(value) if Path(value).is_absolute() else workspace / value
            found.append(Artifact(test, kind, path, _relative(path, workspace)))
    return found


def _artifact_kind(property_name: str) -> ArtifactKind | None:
    prefix = "playwright_"
    if not property_name.startswith(prefix):
        return None
    try:
        return ArtifactKind(property_name[len(prefix) :])
    except ValueError:
        return None


def _relative(path: Path, workspace: Path) -> str:
    try:
        return path.relative_to(workspace).as_posix()
    except ValueError:
        return str(path)


def _tail(tool: ToolRun) -> str:
    lines = [line.strip() for line in tool.stderr_tail or tool.stdout_tail if line.strip()]
    return " | ".join(lines[-5:]) if lines else "no output"
