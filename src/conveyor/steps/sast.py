"""The `sast` step: bandit and semgrep, side by side, over the workspace's Python code.

semgrep runs Conveyor's own rules (`steps/rules/semgrep-python.yml`, shipped with the
package and run offline) plus any rule files the project names in `rules`. Both tools run
at once; if one fails, the other is stopped. `exclude` globs are applied by Conveyor to
both tools' findings and file lists, so they mean the same thing for both (and the same
as every other glob in conveyor.yml).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Field, field_validator, model_validator

from conveyor.engine.step import RAW_DIR, StepContext, ToolRun
from conveyor.engine.tool_output import ScanFailed, read_json_report, tool_failed
from conveyor.findings.fingerprint import SourceLines, assign_fingerprints
from conveyor.findings.model import Category, Finding, Level
from conveyor.findings.sarif import project_path, read_results
from conveyor.spec.globs import check_glob, match_any
from conveyor.spec.types import WorkspacePath
from conveyor.steps.findings_step import (
    FindingsStep,
    ScannerParams,
    ScanResult,
    require_tool,
)
from conveyor.steps.lint import (
    driver_version,
    scan_targets,
    scratch_file,
    tool_sarif,
)
from conveyor.steps.tool_env import ResolvedTool

Tool = Literal["bandit", "semgrep"]
Scan = TypeVar("Scan")  # what one of the tools run at once returns (quality's use it too)
ALL_TOOLS: tuple[Tool, ...] = ("bandit", "semgrep")
RULES_PACKAGE = "conveyor.steps.rules"
RULES_FILE = "semgrep-python.yml"
# Folders that are never the project's own code. semgrep skips them by default; bandit
# only skips some, and a `-x` replaces its list, so all are given (as fnmatch patterns).
NOT_PROJECT_CODE = (
    RAW_DIR,
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".eggs",
    "__pycache__",
    "node_modules",
    "site-packages",
)
SEMGREP_FLAGS = (
    "--metrics=off",
    "--disable-version-check",
    "--quiet",
    # Rule ids as written, not prefixed with the rules file's install path.
    "--no-rewrite-rule-ids",
)
# bandit's SARIF has no result levels; its own severity decides.
BANDIT_LEVELS = {"HIGH": Level.ERROR, "MEDIUM": Level.WARNING, "LOW": Level.NOTE}


class SastParams(ScannerParams):
    tools: list[Tool] = Field(
        default_factory=lambda: list(ALL_TOOLS),
        min_length=1,
        description="Which analysers to run.",
    )
    rules: list[WorkspacePath] = Field(
        default_factory=list,
        description="Extra semgrep rule files, relative to the workspace, run with the "
        "shipped ones.",
    )
    exclude: list[str] = Field(
        default_factory=list, description="Globs of files whose findings are dropped."
    )

    @field_validator("exclude")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        return [check_glob(pattern) for pattern in value]

    @model_validator(mode="after")
    def _rules_need_semgrep(self) -> SastParams:
        if self.rules and "semgrep" not in self.tools:
            raise ValueError("`rules` are semgrep rules: add semgrep to `tools`")
        return self


@dataclass
class ToolScan:
    """One analyser's share of the scan."""

    tool: str
    version: str
    findings: list[Finding]
    files: set[str]
    notes: list[str] = field(default_factory=list)


class SastStep(FindingsStep):
    name: ClassVar[str] = "sast"
    params_model: ClassVar[type[BaseModel]] = SastParams
    version: ClassVar[str] = "1"
    category: ClassVar[Category] = Category.SAST

    def describe(self, params: BaseModel) -> str:
        # The shipped rules are part of what the step does: a change to them re-runs it.
        return f"{super().describe(params)} rules={shipped_rules_digest()}"

    async def scan(self, params: BaseModel, ctx: StepContext) -> ScanResult:
        assert isinstance(params, SastParams)
        tools = list(dict.fromkeys(params.tools))
        located: dict[str, ResolvedTool] = {t: require_tool(ctx, t, params) for t in tools}
        targets = scan_targets(ctx.workspace, params)
        if not targets:
            return ScanResult([], {}, 0)
        scans = await run_concurrently(
            [SCANNERS[tool](ctx, located[tool], params, targets) for tool in tools]
        )
        combined = combine(scans, params.exclude, ctx)
        combined.located = located
        return combined


async def run_concurrently(scans: list[Coroutine[Any, Any, Scan]]) -> list[Scan]:
    """Run the scanners at once; the first failure stops the others and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(scan) for scan in scans]
    except ExceptionGroup as errors:
        failure = next((e for e in errors.exceptions if isinstance(e, ScanFailed)), None)
        if failure is None:
            raise
        raise failure from None
    return [task.result() for task in tasks]


def combine(scans: list[ToolScan], exclude: list[str], ctx: StepContext) -> ScanResult:
    def kept(path: str | None) -> bool:
        return path is None or not exclude or not match_any(path, exclude)

    findings = [f for scan in scans for f in scan.findings if kept(f.path)]
    files = {path for scan in scans for path in scan.files if kept(path)}
    notes = [note for scan in scans for note in scan.notes]
    for note in notes:
        ctx.say(f"sast: {note}")
    return ScanResult(
        findings=assign_fingerprints(findings, SourceLines(ctx.workspace)),
        tools={scan.tool: scan.version for scan in scans},
        files_scanned=len(files),
        notes=notes,
    )


# --- bandit ------------------------------------------------------------------------------


async def scan_bandit(
    ctx: StepContext, bandit: ResolvedTool, params: SastParams, targets: list[str]
) -> ToolScan:
    output = scratch_file(ctx, "bandit.sarif")
    skipped = ",".join(f"{folder}/*,*/{folder}/*" for folder in NOT_PROJECT_CODE)
    report = ["-f", "sarif", "-o", str(output), "--exit-zero", "-q"]
    ran = await ctx.run_tool([*bandit.argv, "-r", *report, "-x", skipped, "--", *targets])
    document = tool_sarif("bandit", ran, output)
    findings = read_results(
        document,
        tool="bandit",
        category=Category.SAST,
        default_level=Level.WARNING,
        base=ctx.workspace,
    )
    findings = [_bandit_level(f) for f in findings]
    files, notes = _bandit_files_and_notes(document, ctx.workspace)
    return ToolScan("bandit", driver_version(document), findings, files, notes)


def _bandit_level(finding: Finding) -> Finding:
    severity = str(finding.properties.get("issue_severity", "")).upper()
    return replace(finding, level=BANDIT_LEVELS.get(severity, finding.level))


def _bandit_files_and_notes(
    document: dict[str, Any], workspace: Path
) -> tuple[set[str], list[str]]:
    files: set[str] = set()
    notes: list[str] = []
    for run in document["runs"]:
        metrics = run.get("properties", {}).get("metrics", {})
        files.update(project_path(name, workspace) for name in metrics if name != "_totals")
        for invocation in run.get("invocations", []):
            for notice in invocation.get("toolConfigurationNotifications", []):
                notes.append(f"bandit: {_where(notice)}{notice.get('message', {}).get('text')}")
    return files, notes


def _where(notice: dict[str, Any]) -> str:
    for location in notice.get("locations", []):
        uri = location.get("physicalLocation", {}).get("artifactLocation", {}).get("uri")
        if uri:
            return f"{uri}: "
    return ""


# --- semgrep -----------------------------------------------------------------------------


async def scan_semgrep(
    ctx: StepContext, semgrep: ResolvedTool, params: SastParams, targets: list[str]
) -> ToolScan:
    sarif_output = scratch_file(ctx, "semgrep.sarif")
    json_output = scratch_file(ctx, "semgrep.json")
    reports = [f"--sarif-output={sarif_output}", f"--json-output={json_output}"]
    with shipped_rules() as rules_path:
        configs = [arg for rules in [str(rules_path), *params.rules] for arg in ("--config", rules)]
        ran = await ctx.run_tool(
            [*semgrep.argv, "scan", *configs, *SEMGREP_FLAGS, *reports, "--", *targets]
        )
    if not ran.result.ok:
        raise tool_failed("semgrep", ran, _semgrep_failure(ran, json_output))
    summary = read_json_report("semgrep", ran, json_output)
    document = tool_sarif("semgrep", ran, sarif_output)
    findings = read_results(
        document,
        tool="semgrep",
        category=Category.SAST,
        default_level=Level.WARNING,
        base=ctx.workspace,
    )
    scanned = summary.get("paths", {}).get("scanned", [])
    notes = [f"semgrep: {_error_text(error)}" for error in summary.get("errors", [])]
    return ToolScan(
        tool="semgrep",
        version=str(summary.get("version") or driver_version(document)),
        findings=findings,
        files={project_path(path, ctx.workspace) for path in scanned},
        notes=notes,
    )


def _semgrep_failure(ran: ToolRun, json_output: Path) -> str:
    """semgrep --quiet says why it failed only in its JSON report; fall back to the log."""
    try:
        summary = read_json_report("semgrep", ran, json_output)
    except ScanFailed:
        return ran.failure_detail("semgrep")
    errors = [_error_text(e) for e in summary.get("errors", []) if e.get("level") == "error"]
    if not errors:
        return ran.failure_detail("semgrep")
    how = ran.result.detail or f"exit {ran.result.exit_code}"
    return f"semgrep failed ({how}): " + " | ".join(errors[:3])


def _error_text(error: dict[str, Any]) -> str:
    message = " ".join(str(error.get("message", "")).split())  # semgrep's messages span lines
    return f"{error.get('type', 'error')}: {message}"


@contextmanager
def shipped_rules() -> Iterator[Path]:
    with resources.as_file(resources.files(RULES_PACKAGE).joinpath(RULES_FILE)) as path:
        yield path


def shipped_rules_digest() -> str:
    text = resources.files(RULES_PACKAGE).joinpath(RULES_FILE).read_bytes()
    return hashlib.sha256(text).hexdigest()[:12]


Scanner = Callable[
    [StepContext, ResolvedTool, SastParams, list[str]], Coroutine[Any, Any, ToolScan]
]
SCANNERS: dict[Tool, Scanner] = {
    "bandit": scan_bandit,
    "semgrep": scan_semgrep,
}
