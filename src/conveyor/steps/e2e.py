"""The `e2e` step: a project's browser tests (Playwright for Python) against a running staging.

    e2e:
      needs: [deploy-staging]
      uses: e2e
      with: {environment: staging}

`with:` keys:
- `environment`: an environment of conveyor.yml (its router URL and live release), or
- `url`: a base URL to test instead (exactly one of the two).
- `tests`: the directory of the E2E tests, relative to the workspace (default `tests/e2e`).
- `browser`: the Chromium to run them in, a path or a command (default: `chromium`, else
  `chromium-browser`, from PATH; the system package `chromium`). Playwright's own
  browser downloads are not used.

The tests are plain pytest-playwright tests (the `page` fixture; `page.goto("/")` opens
the target, which is also the `base_url` fixture); they need no conftest of their own.
They run as `python -m pytest` (the `python` on PATH, with pytest-playwright) in the
workspace, under the project's pytest configuration. The step always runs, never from
the cache: what it tests is what is deployed now.

The step passes when every test passes. It fails when the target does not answer (then
no browser starts), when a test fails (the step names it and says why), and when pytest
or the browser cannot run, the tests directory is missing, or no test was collected.

For each failed test a screenshot (PNG) and a Playwright trace (zip) are kept under
`.conveyor-out/<job>/artifacts/` and published as "e2e-artifact" reports; open a trace
with `playwright show-trace FILE`. The "e2e" report holds the counts, the failures with
their messages, the slowest tests, the artifacts and the target tested.
"""

from __future__ import annotations

import time
from typing import ClassVar

from pydantic import BaseModel, Field

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import FinalizeOnlyStep, StepContext, failed, job_output_dir, passed
from conveyor.findings.junit import TestCase, TestReport, tests_report
from conveyor.findings.reports import E2eArtifact, E2eReport
from conveyor.spec.types import WorkspacePath
from conveyor.verify.e2e import (
    Artifact,
    ArtifactKind,
    E2eLayout,
    RunnerFailed,
    find_browser,
    run_e2e,
)
from conveyor.verify.target import (
    Target,
    TargetParams,
    TargetUnavailable,
    answering_target,
    reason_of,
)


class E2eParams(TargetParams):
    tests: WorkspacePath = Field(
        default="tests/e2e",
        min_length=1,
        description="The directory of the Playwright (pytest) tests, in the workspace.",
    )
    browser: str | None = Field(
        default=None,
        min_length=1,
        description="The Chromium executable (a path or a command on PATH); "
        "default: chromium or chromium-browser from PATH.",
    )


class E2eStep(FinalizeOnlyStep):
    name: ClassVar[str] = "e2e"
    params_model: ClassVar[type[BaseModel]] = E2eParams
    version: ClassVar[str] = "1"
    why_in_finalize: ClassVar[str] = "the tests test what is deployed now"

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        assert isinstance(params, E2eParams)
        started = time.monotonic()
        try:
            target = await answering_target(params, ctx.environments)
        except TargetUnavailable as error:
            return _fail(ctx, f"e2e: {reason_of(error)}", started)
        try:
            browser = find_browser(ctx, params.browser)
            ctx.say(f"e2e: {params.tests} against {target.title} in {browser}")
            layout = E2eLayout(job_output_dir(ctx.workspace, ctx.job_id))
            run = await run_e2e(
                ctx, tests=params.tests, url=target.url, browser=browser, layout=layout
            )
        except RunnerFailed as error:
            return _fail(ctx, f"e2e: {error.detail}", started)
        published = _publish_artifacts(ctx, run.artifacts)
        ctx.evidence.publish(
            self.name,
            _report(ctx.job_id, run.report, target, published).to_bytes(),
            {**run.report.totals.as_dict(), "passed": not run.report.failures()},
        )
        return _verdict(ctx, run.report, run.artifacts, target, time.monotonic() - started)


def _fail(ctx: StepContext, detail: str, started: float) -> ExecResult:
    ctx.say(detail)
    return failed(detail, time.monotonic() - started)


def _publish_artifacts(ctx: StepContext, artifacts: list[Artifact]) -> list[E2eArtifact]:
    """Each kept file into the blob store; their entries for the "e2e" report."""
    entries = []
    for artifact in artifacts:
        try:
            content = artifact.path.read_bytes()
        except OSError as error:
            ctx.say(f"e2e: the {artifact.kind.value} of {artifact.test} is unreadable: {error}")
            continue
        summary = {"test": artifact.test, "kind": artifact.kind.value, "file": artifact.file}
        digest = ctx.evidence.publish("e2e-artifact", content, {**summary, "bytes": len(content)})
        entries.append(E2eArtifact(**summary, bytes=len(content), digest=digest))
    return entries


def _report(
    job: str, report: TestReport, target: Target, artifacts: list[E2eArtifact]
) -> E2eReport:
    tests = tests_report(report, job)
    return E2eReport(**dict(tests), target=target.as_json(), artifacts=artifacts)


def _verdict(
    ctx: StepContext,
    report: TestReport,
    artifacts: list[Artifact],
    target: Target,
    duration: float,
) -> ExecResult:
    failures = report.failures()
    for case in failures:
        ctx.say(f"  ✗ {case.outcome.value} {case.id} at {case.location}: {_what_failed(case)}")
        for artifact in (a for a in artifacts if a.test == case.id):
            ctx.say(f"    {artifact.kind.value}: {artifact.file}{_how_to_open(artifact)}")
    counts = ", ".join(f"{n} {kind}" for kind, n in report.totals.as_dict().items() if n)
    summary = f"e2e: {counts} against {target.title} in {report.duration:.1f}s"
    ctx.say(summary)
    if not failures:
        return passed(duration, summary)
    first = failures[0]
    return failed(
        f"{summary}; first {first.id} at {first.location}: {_what_failed(first)}", duration
    )


def _what_failed(case: TestCase) -> str:
    """The failure's first line, and for Playwright's, the first step of its call log,
    which names the locator: "Locator expected to be visible (Expect "to_be_visible"
    get_by_text("Free shipping") with timeout 500ms)"."""
    lines = [line.strip() for line in case.message.splitlines()]
    calls = lines[lines.index("Call log:") + 1 :] if "Call log:" in lines else []
    if calls and calls[0]:
        return f"{case.headline} ({calls[0].lstrip('- ')})"
    return case.headline


def _how_to_open(artifact: Artifact) -> str:
    if artifact.kind is ArtifactKind.TRACE:
        return f" (open with `playwright show-trace {artifact.file}`)"
    return ""
