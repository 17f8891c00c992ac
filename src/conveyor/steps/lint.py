"""The `lint` step: ruff over the workspace, with the project's own ruff configuration.

ruff runs in the workspace, so it finds the project's `pyproject.toml` / `ruff.toml` as
it would on a developer's machine. It writes SARIF to a scratch file; a second, quick
`ruff check --show-files` counts the files it considered, so a `paths` that matches
nothing fails the job instead of passing on zero files.

The helpers below the step (targets, scratch files, tool SARIF) are shared with `sast`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel
from wcmatch import glob as wcglob

from conveyor.engine.executors.base import ExecRequest, LogSink, Stream
from conveyor.engine.step import StepContext, ToolRun, failed
from conveyor.engine.tool_output import ScanFailed, read_json_report, tool_failed
from conveyor.findings.fingerprint import SourceLines, assign_fingerprints
from conveyor.findings.model import Category, Level
from conveyor.findings.sarif import read_results
from conveyor.spec.globs import GLOB_FLAGS
from conveyor.states import FailureClass
from conveyor.steps.findings_step import (
    FindingsStep,
    ScannerParams,
    ScanResult,
    raw_findings_path,
    require_tool,
)

RUFF = "ruff"


class LintParams(ScannerParams):
    """`paths`: files, folders or globs, relative to the workspace (default: all of it)."""


class LintStep(FindingsStep):
    name: ClassVar[str] = "lint"
    params_model: ClassVar[type[BaseModel]] = LintParams
    version: ClassVar[str] = "1"
    category: ClassVar[Category] = Category.LINT

    async def scan(self, params: BaseModel, ctx: StepContext) -> ScanResult:
        assert isinstance(params, LintParams)
        ruff = require_tool(ctx, RUFF, params)
        targets = scan_targets(ctx.workspace, params)
        if not targets:
            return ScanResult([], {}, 0)
        output = scratch_file(ctx, "ruff.sarif")
        sarif_args = ["--output-format", "sarif", "--output-file", str(output)]
        ran = await ctx.run_tool(
            [*ruff.argv, "check", *sarif_args, "--exit-zero", "--no-cache", "--", *targets]
        )
        document = tool_sarif(RUFF, ran, output)
        # Counted after the check, whose failure says more than the listing's would.
        files = await count_stdout_lines(
            ctx, [*ruff.argv, "check", "--show-files", "--no-cache", "--", *targets]
        )
        findings = read_results(
            document,
            tool=RUFF,
            category=Category.LINT,
            default_level=Level.WARNING,
            base=ctx.workspace,
        )
        return ScanResult(
            assign_fingerprints(findings, SourceLines(ctx.workspace)),
            {RUFF: driver_version(document)},
            files,
            located={RUFF: ruff},
        )


# --- shared with the sast step ---------------------------------------------------------


def scan_targets(workspace: Path, params: ScannerParams) -> list[str]:
    """The workspace paths `params.paths` names, globs expanded; missing ones dropped."""
    try:
        patterns = params.checked_paths()
    except ValueError as error:
        raise ScanFailed(failed(f"paths: {error}", exit_code=None)) from None
    targets: list[str] = []
    for pattern in patterns:
        for match in sorted(wcglob.glob(pattern, root_dir=workspace, flags=GLOB_FLAGS)):
            target = match.rstrip("/") or "."
            if target not in targets:
                targets.append(target)
    return targets


def scratch_file(ctx: StepContext, name: str) -> Path:
    """A fresh path for a tool's report, next to the job's raw findings."""
    path = (ctx.workspace / raw_findings_path(ctx.job_id)).with_name(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a report left by an earlier attempt must not be read
    return path


def tool_sarif(tool: str, ran: ToolRun, output: Path) -> dict[str, Any]:
    """The SARIF a tool wrote, or ScanFailed when it failed or wrote none or nonsense."""
    if not ran.result.ok:
        raise tool_failed(tool, ran)
    document = read_json_report(tool, ran, output)
    if not isinstance(document.get("runs"), list):
        raise tool_failed(tool, ran, f"{tool} wrote SARIF without `runs` to {output.name}")
    return document


def driver_version(document: dict[str, Any]) -> str:
    for run in document.get("runs", []):
        version = run.get("tool", {}).get("driver", {}).get("version")
        if version:
            return str(version)
    return "unknown"


class _StdoutCounter:
    """Counts non-empty stdout lines (a file list is no use in the log); passes the rest on."""

    def __init__(self, inner: LogSink) -> None:
        self.inner = inner
        self.count = 0

    def write(self, stream: Stream, line: str) -> None:
        if stream is Stream.STDOUT:
            self.count += bool(line.strip())
        else:
            self.inner.write(stream, line)


async def count_stdout_lines(ctx: StepContext, argv: list[str]) -> int:
    sink = _StdoutCounter(ctx.log)
    request = ExecRequest(argv=argv, cwd=ctx.workspace, env=dict(ctx.env), timeout=ctx.timeout)
    result = await ctx.executor.execute(request, sink)
    if not result.ok:
        detail = result.detail or f"exit {result.exit_code}"
        raise ScanFailed(
            failed(
                f"{' '.join(argv[:3])} failed ({detail})",
                exit_code=result.exit_code,
                failure=result.failure or FailureClass.EXIT_CODE,
            )
        )
    return sink.count
