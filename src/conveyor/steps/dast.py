"""The `dast` step: black-box security tests of a running environment, gated like `sast`.

    dast:
      needs: [deploy-staging]
      uses: dast
      with: {environment: staging}

`with:` keys:
- `environment` (an environment of conveyor.yml) or `url` (any base URL): exactly one.
- `tools` (default `[wapiti, schemathesis, passive]`): which scanners run (at once):
  - `wapiti` crawls the target from its base URL and attacks every parameter it finds,
    the OpenAPI document's operations included (SQL and command injection, XSS, file
    disclosure, open redirects, CRLF injection by default);
  - `schemathesis` sends generated requests to every operation of the OpenAPI document
    and checks the answers (no 5xx, documented status codes, content types and bodies,
    invalid input refused);
  - `passive` checks the response headers of the base URL and the OpenAPI document
    (Content-Security-Policy, X-Content-Type-Options, framing, Referrer-Policy, HSTS on
    https, cookie flags, server banners naming a version).
- `openapi` (default `/openapi.json`): the path of the service's OpenAPI document on the
  target. It must answer with JSON; `null` when the service has none (schemathesis is
  then skipped, with a note, and wapiti only crawls).
- `wapiti_modules` (default `[sql, xss, permanentxss, exec, file, redirect, crlf]`):
  wapiti's attack modules; only those that need nothing but the target are accepted.
- `schemathesis_checks` (default: all but `allow_header_conformance` and
  `positive_data_acceptance`): the response checks schemathesis runs.
- `max_examples` (default 20): generated requests per operation and test phase.
- `max_scan_time` (default 60s): wapiti's crawl budget, shared out between its attack
  modules too; a tool still running well past it is stopped and fails the step.
- `fail_on`, `block_unchanged`: override `gates.findings` for this job, as in `sast`.

Every finding is a DAST finding in the SARIF model, decided by the same gate as the
static scanners: new findings at or above `fail_on` block, findings the target branch's
last successful run already had are `unchanged` (blocking only with
`block_unchanged`), and `.conveyor/exceptions.yml` waives them until their expiry. A
finding's path is the URL path relative to the target (`api/search`), and its
fingerprint leaves out host, port and payload, so it survives redeploys (see
conveyor.verify.dast).

The step fails when the target does not answer (before any scan), when the OpenAPI
document cannot be fetched, when a tool is missing, crashes, times out, writes no
readable report or exercised nothing, and when the gate blocks. Everything happens in
`finalize` (a running environment is no cacheable input). The tools' files go to
`.conveyor-out/<job>/dast/`, the summary to `.conveyor-out/<job>/dast.json`; the "sarif"
and "gate" reports are published as for `sast`, and a "dast" report holds the target,
what each tool exercised, the notes and the verdict.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import StepContext, failed, job_output_dir, passed
from conveyor.engine.tool_output import ScanFailed
from conveyor.errors import ConveyorError
from conveyor.findings.model import Category
from conveyor.findings.reports import DastReport, DastToolRun
from conveyor.spec.gates import FailLevel, FindingsGate
from conveyor.spec.types import Duration
from conveyor.steps.findings_step import FindingsStep, ScanResult
from conveyor.verify.dast import DastTool, PathTemplates, ToolReport, gather_all
from conveyor.verify.dast.schemathesis import (
    DEFAULT_CHECKS,
    SCHEMATHESIS,
    Check,
    SchemathesisRun,
    scan_schemathesis,
)
from conveyor.verify.dast.wapiti import (
    DEFAULT_MODULES,
    WAPITI,
    WapitiModule,
    WapitiScan,
    scan_wapiti,
)
from conveyor.verify.target import Target, TargetParams, answering_target, reason_of

OPENAPI_TIMEOUT_S = 10.0
TOOL_GRACE_S = 30.0  # schemathesis is stopped this long after max_scan_time
VERIFY_EXTRA = "pip install 'conveyor[verify]'"
INSTALL_HINTS = {
    WAPITI: "pip install wapiti3 (in a virtualenv of its own: it pins its dependencies)",
    SCHEMATHESIS: VERIFY_EXTRA,
}
SUMMARY_FILE = "dast.json"


class DastParams(TargetParams):
    tools: list[DastTool] = Field(
        default_factory=lambda: list(DastTool),
        min_length=1,
        description="Which scanners run: wapiti, schemathesis, passive.",
    )
    openapi: str | None = Field(
        default="/openapi.json",
        pattern=r"^/",
        description="The path of the OpenAPI document on the target; null when there is none "
        "(schemathesis is then skipped).",
    )
    wapiti_modules: list[WapitiModule] = Field(
        default_factory=lambda: list(DEFAULT_MODULES),
        min_length=1,
        description="wapiti's attack modules.",
    )
    schemathesis_checks: list[Check] = Field(
        default_factory=lambda: list(DEFAULT_CHECKS),
        min_length=1,
        description="The response checks schemathesis runs.",
    )
    max_examples: int = Field(
        default=20, ge=1, le=1000, description="schemathesis's requests per operation and phase."
    )
    max_scan_time: Duration = Field(
        default=60.0, description="wapiti's crawl budget, shared by its attack modules too."
    )
    fail_on: FailLevel | None = Field(
        default=None, description="Overrides gates.findings.fail_on for this job."
    )
    block_unchanged: bool | None = Field(
        default=None, description="Overrides gates.findings.block_unchanged for this job."
    )

    @field_validator("tools", "wapiti_modules", "schemathesis_checks")
    @classmethod
    def _once_each(cls, value: list[Any]) -> list[Any]:
        return list(dict.fromkeys(value))


@dataclass(frozen=True)
class Scope:
    """What one scan covers: the target, its OpenAPI document and the job's folder."""

    target: Target
    openapi_url: str | None
    templates: PathTemplates
    folder: Path


class DastStep(FindingsStep):
    name: ClassVar[str] = "dast"
    params_model: ClassVar[type[BaseModel]] = DastParams
    version: ClassVar[str] = "1"
    category: ClassVar[Category] = Category.DAST
    scanned_unit: ClassVar[str] = "pages, operations or responses"  # what the tools exercised
    why_in_finalize: ClassVar[str] = "it tests what is deployed now"

    def outputs(self, params: BaseModel) -> list[str]:
        return []

    async def run(self, params: BaseModel, ctx: StepContext) -> ExecResult:
        return passed(detail=f"the DAST scan runs in finalize: {self.why_in_finalize}")

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        """Scan (FindingsStep.run: `scan` below, then the raw findings), then the same
        baseline, exceptions, gate and reports as every findings step."""
        if ran is not None and not ran.ok:
            return ran
        started = time.monotonic()
        scanned = await super().run(params, ctx)
        if not scanned.ok:
            return replace(scanned, duration=time.monotonic() - started)
        decided = await super().finalize(params, ctx, scanned)
        summary = self._publish_summary(ctx, decided)
        ctx.say(summary)
        return replace(decided, duration=time.monotonic() - started, detail=summary)

    def policy(self, params: BaseModel, ctx: StepContext) -> FindingsGate:
        assert isinstance(params, DastParams)
        overrides: dict[str, Any] = {}
        if params.fail_on is not None:
            overrides["fail_on"] = params.fail_on
        if params.block_unchanged is not None:
            overrides["block_unchanged"] = params.block_unchanged
        return ctx.evidence.gates.findings.model_copy(update=overrides)

    async def scan(self, params: BaseModel, ctx: StepContext) -> ScanResult:
        assert isinstance(params, DastParams)
        scope = await _scope(params, ctx)
        tools = _tools(params, scope, ctx)
        # schemathesis writes (it POSTs and DELETEs generated data), and a page changing
        # under wapiti's boolean-based checks reads as an injection: it goes second.
        readers = [t for t in tools if t is not DastTool.SCHEMATHESIS]
        reports = await gather_all([_scan_with(tool, params, scope, ctx) for tool in readers])
        if DastTool.SCHEMATHESIS in tools:
            reports.append(await _scan_with(DastTool.SCHEMATHESIS, params, scope, ctx))
        for report in reports:
            ctx.say(report.summary())
        notes = [note for report in reports for note in report.notes]
        if params.openapi is None and DastTool.SCHEMATHESIS in params.tools:
            notes.append("schemathesis skipped: `openapi` is null (no OpenAPI document)")
        for note in notes:
            ctx.say(f"dast: {note}")
        _write_summary(_summary_path(ctx), scope, reports, notes)
        return ScanResult(
            findings=[finding for report in reports for finding in report.findings],
            tools={report.tool.value: report.version for report in reports},
            files_scanned=sum(report.exercised for report in reports),
            notes=notes,
        )

    def _publish_summary(self, ctx: StepContext, decided: ExecResult) -> str:
        written = _summary_path(ctx).read_text(encoding="utf-8")
        report = DastReport.model_validate_json(written).model_copy(
            update={"job": ctx.job_id, "passed": decided.ok, "gate": decided.detail}
        )
        found = sum(tool.findings for tool in report.tools.values())
        ctx.evidence.publish(
            self.name, report.to_bytes(), {"findings": found, "passed": decided.ok}
        )
        exercised = ", ".join(
            f"{name} {tool.exercised} {tool.unit}" for name, tool in report.tools.items()
        )
        return f"dast of {report.target['title']} ({exercised}): {decided.detail}"


def _fail(detail: str) -> ScanFailed:
    return ScanFailed(failed(f"dast: {detail}", exit_code=None))


async def _scope(params: DastParams, ctx: StepContext) -> Scope:
    """The answering target and its OpenAPI document's path templates."""
    try:
        target = await answering_target(params, ctx.environments)
    except ConveyorError as error:  # TargetUnavailable, or a pipeline without a project
        raise _fail(reason_of(error)) from None
    ctx.say(f"dast: testing {target.title}")
    openapi_url = None if params.openapi is None else f"{target.url}{params.openapi}"
    document = await _openapi_document(openapi_url) if openapi_url else None
    folder = job_output_dir(ctx.workspace, ctx.job_id) / "dast"
    return Scope(target, openapi_url, PathTemplates.from_openapi(document), folder)


async def _openapi_document(url: str) -> dict[str, Any]:
    import httpx  # here: the step table loads this module for every run that names `dast`

    hint = "set `openapi:` to the document's path, or to null when the service has none"
    try:
        async with httpx.AsyncClient(timeout=OPENAPI_TIMEOUT_S) as client:
            response = await client.get(url)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise _fail(f"cannot read the OpenAPI document at {url}: {error} ({hint})") from None
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise _fail(f"{url} is not an OpenAPI document: it has no `paths` ({hint})")
    return document


def _tools(params: DastParams, scope: Scope, ctx: StepContext) -> list[DastTool]:
    tools = [t for t in params.tools if t is not DastTool.SCHEMATHESIS or scope.openapi_url]
    for tool in tools:
        if tool is not DastTool.PASSIVE and ctx.which(tool.value) is None:
            hint = INSTALL_HINTS[tool.value]
            raise _fail(f"{tool.value} is not installed (or not on PATH): {hint}")
    return tools


def _scan_with(
    tool: DastTool, params: DastParams, scope: Scope, ctx: StepContext
) -> Coroutine[Any, Any, ToolReport]:
    if tool is DastTool.WAPITI:
        scan = WapitiScan(
            scope.target,
            tuple(params.wapiti_modules),
            params.max_scan_time,
            scope.openapi_url,
            scope.folder / "wapiti",
        )
        return scan_wapiti(ctx, scan, scope.templates)
    if tool is DastTool.SCHEMATHESIS:
        assert scope.openapi_url is not None
        run = SchemathesisRun(
            scope.target,
            scope.openapi_url,
            tuple(params.schemathesis_checks),
            params.max_examples,
            params.max_scan_time + TOOL_GRACE_S,
            scope.folder / "schemathesis",
        )
        return scan_schemathesis(ctx, run)
    from conveyor.verify.dast.passive import scan_passive  # imports httpx: only when it runs

    pages = ["/", *([params.openapi] if params.openapi else [])]
    return scan_passive(scope.target, pages, scope.templates)


def _summary_path(ctx: StepContext) -> Path:
    return job_output_dir(ctx.workspace, ctx.job_id) / SUMMARY_FILE


def _write_summary(path: Path, scope: Scope, reports: list[ToolReport], notes: list[str]) -> None:
    target = scope.target
    summary = DastReport(
        target={**target.as_json(), "title": target.title},
        openapi=scope.openapi_url,
        tools={
            report.tool.value: DastToolRun(
                version=report.version,
                exercised=report.exercised,
                unit=report.unit,
                findings=len(report.findings),
            )
            for report in reports
        },
        notes=notes,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(summary.model_dump_json(indent=1, exclude={"job", "passed", "gate"}))
