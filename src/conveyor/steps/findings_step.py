"""The shared shape of the scanner steps (`lint`, `sast`, `secrets`).

`run` (cached): the scanner's tools run and their results are normalised into findings,
fingerprinted against the workspace's sources, and written to a raw findings file that
is kept as an output. `finalize` (never cached): the findings are classified against the
target branch's baseline, the exceptions file is applied (with today's date), the gate
decides, and the SARIF log and the gate decision are published as reports.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.names import safe_name
from conveyor.engine.step import RAW_DIR, StepContext, failed, passed
from conveyor.engine.tool_output import ScanFailed
from conveyor.errors import ConveyorError
from conveyor.findings.accepted import load_accepted
from conveyor.findings.baseline import classify
from conveyor.findings.exceptions import EXCEPTIONS_FILE, load_exceptions, waiver_line
from conveyor.findings.gate import GateDecision, blocking_findings, decide_findings
from conveyor.findings.model import Category, Disposition, Finding, Level, Waiver
from conveyor.findings.reports import GateReport
from conveyor.findings.sarif import findings_from_log, write_log
from conveyor.spec.gates import FailLevel, FindingsGate
from conveyor.spec.globs import check_glob
from conveyor.steps.tool_env import ResolvedTool, ToolSource, locate_tool

SHOWN_WAIVERS = 20  # waiver lines in a job's log; the report has every one


class ScannerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    paths: list[str] = Field(default_factory=lambda: ["."], description="What to scan.")
    fail_on: FailLevel | None = Field(
        default=None, description="Overrides gates.findings.fail_on for this job."
    )
    block_unchanged: bool | None = None
    tools_from: ToolSource = Field(
        default=ToolSource.CONVEYOR,
        description="Where the scanners come from: `conveyor` (installed with Conveyor) "
        "or `path` (the job's PATH, for a project that pins its own versions).",
    )

    def checked_paths(self) -> list[str]:
        for path in self.paths:
            if path != ".":
                check_glob(path)
        return self.paths


@dataclass
class ScanResult:
    findings: list[Finding]
    tools: dict[str, str]  # tool name -> version
    files_scanned: int
    notes: list[str] = field(default_factory=list)
    located: dict[str, ResolvedTool] = field(default_factory=dict)  # for the log only


def raw_findings_path(job_id: str) -> str:
    return f"{RAW_DIR}/{safe_name(job_id)}/findings.json"


class FindingsStep(ABC):
    """Subclasses set name/params_model/version/category and implement `scan`."""

    name: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]
    version: ClassVar[str]
    category: ClassVar[Category]
    scanned_unit: ClassVar[str] = "files"  # what `files_scanned` counts, for the log
    found_unit: ClassVar[str] = "findings"  # what `run` found, for the log

    def describe(self, params: BaseModel) -> str:
        return f"{self.name} {params.model_dump_json()}"

    def outputs(self, params: BaseModel) -> list[str]:
        return [f"{RAW_DIR}/**/findings.json"]

    @abstractmethod
    async def scan(self, params: BaseModel, ctx: StepContext) -> ScanResult:
        """Run the tools; raise ScanFailed when one crashed or printed nonsense."""

    async def run(self, params: BaseModel, ctx: StepContext) -> ExecResult:
        started = time.monotonic()
        try:
            scanned = await self.scan(params, ctx)
        except ScanFailed as error:
            ctx.say(error.result.detail)
            return error.result
        if scanned.files_scanned == 0:
            detail = (
                f"{self.name}: scanned no {self.scanned_unit} (paths matched nothing), "
                "so nothing is proven"
            )
            ctx.say(detail)
            return failed(detail, time.monotonic() - started)
        target = ctx.workspace / raw_findings_path(ctx.job_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(_raw(scanned), indent=1))
        for name, tool in scanned.located.items():
            ctx.say(f"{self.name}: {tool.provenance(scanned.tools.get(name, 'unknown'))}")
        ctx.say(
            f"{self.name}: {scanned.files_scanned} {self.scanned_unit} scanned, "
            f"{len(scanned.findings)} {self.found_unit}"
        )
        return passed(time.monotonic() - started)

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        if ran is not None and not ran.ok:
            return ran
        scanned = _read_raw(ctx, raw_findings_path(ctx.job_id))
        findings = self.dispose(self.judged(scanned.findings, params, ctx), ctx)
        decision = self.decide(findings, params, ctx)
        log = write_log(findings, tools=scanned.tools)
        ctx.evidence.publish("sarif", json.dumps(log).encode(), {"results": len(findings)})
        ctx.evidence.publish(
            "gate",
            GateReport(job=ctx.job_id, **asdict(decision)).to_bytes(),
            {"gate": decision.gate, "passed": decision.passed},
        )
        for reason in decision.reasons:
            ctx.say(f"  ✗ {reason}")
        if not decision.passed:
            self.say_how_to_accept(findings, params, ctx)
        ctx.say(decision.summary())
        if decision.passed:
            return passed(detail=decision.summary())
        first = decision.reasons[0] if decision.reasons else ""
        return failed(f"{decision.summary()}: {first}")

    def judged(self, scanned: list[Finding], params: BaseModel, ctx: StepContext) -> list[Finding]:
        """The scan's findings the gate judges: all of them, unless a step measures in
        `run` and applies its thresholds here (`quality`: they come from conveyor.yml,
        which is not part of the cache key)."""
        return scanned

    def dispose(self, findings: list[Finding], ctx: StepContext) -> list[Finding]:
        """Baseline first (new or unchanged), then exceptions (waived or expired).

        The baseline is the target branch's last successful run plus the findings the
        project accepted in `.conveyor/baseline.yml`, which counts before that first run."""
        baseline: set[str] = set(load_accepted(ctx.workspace).fingerprints)
        for log in ctx.evidence.baseline("sarif"):
            baseline.update(f.fingerprint for f in findings_from_log(json.loads(log)))
        classified = classify(findings, baseline)
        exceptions = load_exceptions(ctx.workspace)
        return exceptions.apply(classified, date.today())

    def say_how_to_accept(
        self, findings: list[Finding], params: BaseModel, ctx: StepContext
    ) -> None:
        """The exact waiver lines of the blocking findings, and the first day's way out."""
        policy, secrets = self.policy(params, ctx), ctx.evidence.gates.secrets
        blocking = [f for f in blocking_findings(findings, policy, secrets) if f.fingerprint]
        if not blocking:
            return
        owner = ctx.env.get("CONVEYOR_ACTOR") or ctx.env.get("USER") or "you@example.com"
        ctx.say(f"  to waive one, add its line under `exceptions:` in {EXCEPTIONS_FILE}:")
        for finding in blocking[:SHOWN_WAIVERS]:
            ctx.say(f"    {waiver_line(finding, owner, date.today())}")
        if len(blocking) > SHOWN_WAIVERS:
            ctx.say(f"    ... {len(blocking) - SHOWN_WAIVERS} more: `conveyor report` has each one")
        if any(f.disposition is Disposition.NEW for f in blocking):
            ctx.say(
                "  adopting the gates on existing code? accept today's findings as the "
                'baseline, so only new ones block: conveyor baseline accept --reason "..."'
            )

    def decide(self, findings: list[Finding], params: BaseModel, ctx: StepContext) -> GateDecision:
        policy = self.policy(params, ctx)
        return decide_findings(self.name, findings, policy, ctx.evidence.gates.secrets)

    def policy(self, params: BaseModel, ctx: StepContext) -> FindingsGate:
        base = ctx.evidence.gates.findings
        overrides: dict[str, Any] = {}
        if isinstance(params, ScannerParams):
            if params.fail_on is not None:
                overrides["fail_on"] = params.fail_on
            if params.block_unchanged is not None:
                overrides["block_unchanged"] = params.block_unchanged
        return base.model_copy(update=overrides)


def require_tool(ctx: StepContext, tool: str, params: BaseModel) -> ResolvedTool:
    """The tool from where the job says (Conveyor's tool environment by default)."""
    source = params.tools_from if isinstance(params, ScannerParams) else ToolSource.CONVEYOR
    return locate_tool(ctx, tool, source)


def _raw(scanned: ScanResult) -> dict[str, Any]:
    return {
        "tools": scanned.tools,
        "files_scanned": scanned.files_scanned,
        "notes": scanned.notes,
        "findings": [_finding_json(f) for f in scanned.findings],
    }


def _finding_json(finding: Finding) -> dict[str, Any]:
    data = asdict(finding)
    data["level"] = finding.level.value
    data["category"] = finding.category.value
    data["disposition"] = finding.disposition.value
    return data


def read_scan(ctx: StepContext) -> ScanResult:
    """What this job's `run` scanned (its raw findings file), for `finalize`."""
    return _read_raw(ctx, raw_findings_path(ctx.job_id))


def _read_raw(ctx: StepContext, relative: str) -> ScanResult:
    path = ctx.workspace / relative
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConveyorError(f"the raw findings of {ctx.job_id} are missing: {error}") from None
    findings = [
        Finding(
            **{
                **item,
                "level": Level(item["level"]),
                "category": Category(item["category"]),
                "disposition": Disposition(item["disposition"]),
                "waiver": Waiver(**item["waiver"]) if item.get("waiver") else None,
            }
        )
        for item in data["findings"]
    ]
    return ScanResult(findings, data["tools"], data["files_scanned"], data.get("notes", []))
