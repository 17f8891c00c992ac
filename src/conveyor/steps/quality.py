"""The `quality` step: cyclomatic complexity per function (lizard) and copied blocks
(jscpd), as findings in the SARIF model, judged against `gates.quality`.

`run` (cached) measures everything: every function's complexity and every copied block
of at least `SCAN_MIN_LINES` lines and `SCAN_MIN_TOKENS` tokens, each fingerprinted, plus
the lines measured (`quality.json`). `finalize` (never cached) applies the thresholds of
conveyor.yml, which are not part of the cache key: a function over `max_complexity` and a
block over `min_duplicate_lines`/`min_duplicate_tokens` are findings, classified against
the baseline and the waivers like every scanner's; the duplication ratio is judged against
`max_duplication_ratio` and the target branch's own ratio; the "quality" report carries
the figures the release record shows as trends.

A complexity finding is located at the function's `def` line, so its fingerprint (rule,
path, that line's text) survives edits elsewhere and in the body: an existing complex
function stays baselined while its signature does not change. A copied block's finding is
located at its later copy (by path, then line) and names the other one; its fingerprint
is the rule, that path, the other copy's path and the block's text, whitespace normalised.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from conveyor.engine.executors.base import ExecRequest, Stream
from conveyor.engine.step import RAW_DIR, StepContext, ToolRun
from conveyor.engine.tool_output import read_json_report, tool_failed
from conveyor.errors import ConveyorError
from conveyor.findings.fingerprint import SourceLines, assign_fingerprints, normalise
from conveyor.findings.gate import GateDecision
from conveyor.findings.model import Category, Finding, Level
from conveyor.findings.reports import (
    ComplexitySummary,
    DuplicationSummary,
    QualityReport,
)
from conveyor.findings.sarif import project_path
from conveyor.spec.gates import QualityGate
from conveyor.spec.globs import check_glob, match_any
from conveyor.steps.findings_step import (
    FindingsStep,
    ScannerParams,
    ScanResult,
    raw_findings_path,
    read_scan,
    require_tool,
)
from conveyor.steps.lint import scan_targets, scratch_file
from conveyor.steps.sast import NOT_PROJECT_CODE, run_concurrently
from conveyor.steps.tool_env import ResolvedTool

LIZARD, JSCPD = "lizard", "jscpd"
COMPLEXITY_RULE = "quality/complexity"
DUPLICATION_RULE = "quality/duplication"
# The smallest copied block the scan records; `gates.quality` may only ask for larger
# ones (spec/gates.py), so a threshold change never needs a new scan.
SCAN_MIN_LINES = 3
SCAN_MIN_TOKENS = 20
SOURCE_SUFFIXES = (".py",)
LIZARD_COLUMNS = {"CCN", "NLOC", "function", "long_name", "file", "start", "end"}
MEASURES_FILE = "quality.json"


class QualityParams(ScannerParams):
    """`paths`: what to measure (Python files under them); `exclude`: globs left out."""

    exclude: list[str] = Field(
        default_factory=list, description="Globs of files not measured (generated code...)."
    )
    ignore_identifiers: bool = Field(
        default=False,
        description="Also count blocks that differ only in names as copies (jscpd's "
        "renamed, Type-2 clones).",
    )

    @field_validator("exclude")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        return [check_glob(pattern) for pattern in value]


@dataclass(frozen=True)
class Measures:
    """What `run` measured beyond the candidate findings: the files and their lines."""

    files: int
    lines: int

    @classmethod
    def read(cls, path: Path) -> Measures:
        try:
            data = json.loads(path.read_text())
            return cls(files=int(data["files"]), lines=int(data["lines"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConveyorError(f"the measures of the quality job are missing: {error}") from None


class QualityStep(FindingsStep):
    name: ClassVar[str] = "quality"
    params_model: ClassVar[type[BaseModel]] = QualityParams
    version: ClassVar[str] = "1"
    category: ClassVar[Category] = Category.QUALITY
    found_unit: ClassVar[str] = "functions and copied blocks measured"

    def outputs(self, params: BaseModel) -> list[str]:
        return [*super().outputs(params), f"{RAW_DIR}/**/{MEASURES_FILE}"]

    async def scan(self, params: BaseModel, ctx: StepContext) -> ScanResult:
        assert isinstance(params, QualityParams)
        lizard = require_tool(ctx, LIZARD, params)
        jscpd = require_tool(ctx, JSCPD, params)
        files = source_files(ctx.workspace, params)
        if not files:
            return ScanResult([], {}, 0)
        complexity, duplication = await run_concurrently(
            [
                scan_complexity(ctx, lizard, files),
                scan_duplication(ctx, jscpd, files, params.ignore_identifiers),
            ]
        )
        measures = Measures(files=len(files), lines=duplication.lines)
        measures_path(ctx).write_text(json.dumps(measures.__dict__))
        findings = [*complexity.findings, *duplication.findings]
        sources = SourceLines(ctx.workspace)
        texts = {
            index: finding.properties["identity"]
            for index, finding in enumerate(findings)
            if "identity" in finding.properties
        }
        return ScanResult(
            findings=assign_fingerprints(findings, sources, line_texts=texts),
            tools={LIZARD: complexity.version, JSCPD: duplication.version},
            files_scanned=len(files),
            located={LIZARD: lizard, JSCPD: jscpd},
        )

    def judged(self, scanned: list[Finding], params: BaseModel, ctx: StepContext) -> list[Finding]:
        policy = ctx.evidence.gates.quality
        return [with_threshold(finding, policy) for finding in scanned if offends(finding, policy)]

    def decide(self, findings: list[Finding], params: BaseModel, ctx: StepContext) -> GateDecision:
        """The findings' decision, and the duplication ratio's; publishes the "quality"
        report with the decision (the figures the release record shows as trends)."""
        decision = super().decide(findings, params, ctx)
        report = self.report(ctx)
        blocked = ratio_reason(report.duplication, baseline_ratio(ctx))
        if blocked is not None:
            decision = replace(decision, passed=False, reasons=[*decision.reasons, blocked])
        report.passed, report.reasons = decision.passed, list(decision.reasons)
        ctx.evidence.publish(
            "quality",
            report.to_bytes(),
            {"max_complexity": report.complexity.max, "duplication": report.duplication.ratio},
        )
        ctx.say(quality_summary(report))
        return decision

    def report(self, ctx: StepContext) -> QualityReport:
        """The figures of this job (all functions and blocks `run` measured)."""
        scanned = read_scan(ctx)
        policy = ctx.evidence.gates.quality
        measures = Measures.read(measures_path(ctx))
        return QualityReport(
            job=ctx.job_id,
            tools=scanned.tools,
            complexity=complexity_summary(scanned.findings, policy),
            duplication=duplication_summary(scanned.findings, policy, measures),
        )


def measures_path(ctx: StepContext) -> Path:
    return (ctx.workspace / raw_findings_path(ctx.job_id)).with_name(MEASURES_FILE)


# --- which files ---------------------------------------------------------------------------


def source_files(workspace: Path, params: QualityParams) -> list[str]:
    """The project's Python files under `paths`, less `exclude` and never-project folders."""
    found: dict[str, None] = {}
    for target in scan_targets(workspace, params):
        path = workspace / target
        candidates = [path] if path.is_file() else _walk(path)
        for candidate in candidates:
            relative = candidate.relative_to(workspace).as_posix()
            if candidate.suffix in SOURCE_SUFFIXES and not (
                params.exclude and match_any(relative, params.exclude)
            ):
                found[relative] = None
    return sorted(found)


def _walk(folder: Path) -> Iterable[Path]:
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in NOT_PROJECT_CODE)
        yield from (Path(root) / name for name in sorted(names))


# --- complexity: lizard --------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    version: str
    findings: list[Finding]
    lines: int = 0


async def scan_complexity(ctx: StepContext, lizard: ResolvedTool, files: list[str]) -> Measured:
    listing = scratch_file(ctx, "lizard-files.txt")
    listing.write_text("".join(f"{name}\n" for name in files))
    output = scratch_file(ctx, "lizard.csv")
    # -i -1: lizard's own threshold warnings never fail it; the gate applies conveyor.yml's.
    argv = [*lizard.argv, "--csv", "-V", "-i", "-1", "-f", str(listing), "-o", str(output)]
    ran = await ctx.run_tool(argv)
    listing.unlink(missing_ok=True)
    if not ran.result.ok:
        raise tool_failed(LIZARD, ran)
    version = await _version(ctx, lizard)
    return Measured(version, complexity_findings(_read_csv(ran, output), ctx.workspace))


def _read_csv(ran: ToolRun, output: Path) -> list[dict[str, str]]:
    try:
        with output.open(newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise tool_failed(LIZARD, ran, f"lizard wrote no readable CSV ({error})") from None
    finally:
        output.unlink(missing_ok=True)  # read once, as the other tools' reports
    missing = LIZARD_COLUMNS - set(rows[0]) if rows else set()
    if missing:
        raise tool_failed(LIZARD, ran, f"lizard's CSV lacks the columns {sorted(missing)}")
    return rows


def complexity_findings(rows: list[dict[str, str]], workspace: Path) -> list[Finding]:
    """One candidate per function: the gate keeps those over the threshold."""
    findings = []
    for row in rows:
        try:
            ccn, start, end = int(row["CCN"]), int(row["start"]), int(row["end"])
        except (TypeError, ValueError):
            continue  # a row lizard could not measure says nothing about the gate
        findings.append(
            Finding(
                tool=LIZARD,
                rule_id=COMPLEXITY_RULE,
                level=Level.ERROR,
                message=f"{row['function']} has a cyclomatic complexity of {ccn}",
                category=Category.QUALITY,
                path=project_path(row["file"], workspace),
                start_line=start,
                end_line=end,
                rule_name="cyclomatic-complexity",
                properties={
                    "complexity": ccn,
                    "nloc": _int(row.get("NLOC")),
                    "function": row["function"],
                },
            )
        )
    return findings


async def _version(ctx: StepContext, tool: ResolvedTool) -> str:
    """The tool's version (`1.24.3`, `jscpd 5.4.2`: the last word), kept out of the log."""
    sink = _Captured()
    request = ExecRequest(
        argv=[*tool.argv, "--version"], cwd=ctx.workspace, env=dict(ctx.env), timeout=ctx.timeout
    )
    result = await ctx.executor.execute(request, sink)
    words = " ".join(sink.lines).split()
    return words[-1] if result.ok and words else "unknown"


class _Captured:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, stream: Stream, line: str) -> None:
        self.lines.append(line)


# --- duplication: jscpd --------------------------------------------------------------------


async def scan_duplication(
    ctx: StepContext, jscpd: ResolvedTool, files: list[str], ignore_identifiers: bool
) -> Measured:
    output = scratch_file(ctx, "jscpd.json")
    argv = [
        *jscpd.argv,
        *("--min-lines", str(SCAN_MIN_LINES), "--min-tokens", str(SCAN_MIN_TOKENS)),
        *("--mode", "weak"),  # comments are not code: a copy with new comments is a copy
        *("--reporters", "json", "--output", str(output.parent), "--report-name", "jscpd"),
        *("--no-colors", "--absolute", "--no-gitignore", "--format", "python"),
        *(["--ignore-identifiers"] if ignore_identifiers else []),
        "--",
        *files,
    ]
    ran = await ctx.run_tool(argv)
    if not ran.result.ok:
        raise tool_failed(JSCPD, ran)
    document = read_json_report(JSCPD, ran, output)
    duplicates, total = document.get("duplicates"), document.get("statistics", {}).get("total")
    if not isinstance(duplicates, list) or not isinstance(total, dict):
        raise tool_failed(JSCPD, ran, "jscpd's JSON report has no `duplicates` or totals")
    version = await _version(ctx, jscpd)
    findings = [f for f in (_clone(item, ctx.workspace) for item in duplicates) if f is not None]
    return Measured(version, findings, lines=_int(total.get("lines")))


def _clone(item: Any, workspace: Path) -> Finding | None:
    """A copied block as a finding at its later copy, naming the earlier one."""
    try:
        copies = sorted(
            (
                project_path(str(part["name"]), workspace),
                int(part["startLoc"]["line"]),
                int(part["endLoc"]["line"]),
            )
            for part in (item["firstFile"], item["secondFile"])
        )
        lines, tokens = int(item["lines"]), int(item["tokens"])
    except (KeyError, TypeError, ValueError):
        return None
    (first, first_start, first_end), (path, start, end) = copies
    fragment = " ".join(normalise(line) for line in str(item.get("fragment", "")).splitlines())
    return Finding(
        tool=JSCPD,
        rule_id=DUPLICATION_RULE,
        level=Level.ERROR,
        message=f"{lines} lines ({tokens} tokens) copied from {first}:{first_start}-{first_end}",
        category=Category.QUALITY,
        path=path,
        start_line=start,
        end_line=end,
        rule_name="duplicated-block",
        properties={
            "lines": lines,
            "tokens": tokens,
            "copy_of": {"path": first, "start_line": first_start, "end_line": first_end},
            "identity": f"{first}\x1f{fragment}",
        },
    )


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


# --- the thresholds (finalize) ---------------------------------------------------------------


def offends(finding: Finding, policy: QualityGate) -> bool:
    if finding.rule_id == COMPLEXITY_RULE:
        return _int(finding.properties.get("complexity")) > policy.max_complexity
    if finding.rule_id == DUPLICATION_RULE:
        return _is_duplicate(finding, policy)
    return True


def _is_duplicate(finding: Finding, policy: QualityGate) -> bool:
    return (
        _int(finding.properties.get("lines")) >= policy.min_duplicate_lines
        and _int(finding.properties.get("tokens")) >= policy.min_duplicate_tokens
    )


def with_threshold(finding: Finding, policy: QualityGate) -> Finding:
    """The message says which threshold the finding is over (thresholds change)."""
    properties = {k: v for k, v in finding.properties.items() if k != "identity"}
    if finding.rule_id == COMPLEXITY_RULE:
        message = f"{finding.message} (max {policy.max_complexity})"
    else:
        message = (
            f"{finding.message} (a copy counts from {policy.min_duplicate_lines} lines and "
            f"{policy.min_duplicate_tokens} tokens)"
        )
    return replace(finding, message=message, properties=properties)


def complexity_summary(scanned: list[Finding], policy: QualityGate) -> ComplexitySummary:
    functions = [f for f in scanned if f.rule_id == COMPLEXITY_RULE]
    values = [_int(f.properties.get("complexity")) for f in functions]
    if not functions:
        return ComplexitySummary(threshold=policy.max_complexity)
    worst = max(functions, key=lambda f: _int(f.properties.get("complexity")))
    return ComplexitySummary(
        functions=len(functions),
        mean=round(sum(values) / len(values), 2),
        max=max(values),
        worst=f"{worst.location} {worst.properties.get('function', '?')}",
        threshold=policy.max_complexity,
        over_threshold=sum(value > policy.max_complexity for value in values),
    )


def duplication_summary(
    scanned: list[Finding], policy: QualityGate, measures: Measures
) -> DuplicationSummary:
    blocks = [f for f in scanned if f.rule_id == DUPLICATION_RULE and _is_duplicate(f, policy)]
    covered: dict[str, set[int]] = {}
    for block in blocks:
        copy_of = block.properties.get("copy_of", {})
        for path, start, end in (
            (block.path, block.start_line, block.end_line),
            (copy_of.get("path"), copy_of.get("start_line"), copy_of.get("end_line")),
        ):
            if path and start and end:
                covered.setdefault(str(path), set()).update(range(int(start), int(end) + 1))
    duplicated = sum(len(lines) for lines in covered.values())
    ratio = round(100 * duplicated / measures.lines, 2) if measures.lines else None
    return DuplicationSummary(
        files=measures.files,
        lines=measures.lines,
        duplicated_lines=duplicated,
        ratio=ratio,
        blocks=len(blocks),
        min_lines=policy.min_duplicate_lines,
        min_tokens=policy.min_duplicate_tokens,
        max_ratio=policy.max_duplication_ratio,
    )


def baseline_ratio(ctx: StepContext) -> float | None:
    """This job's duplication ratio on the target branch's last successful run, if any."""
    reports = [QualityReport.model_validate_json(raw) for raw in ctx.evidence.baseline("quality")]
    mine = [r for r in reports if r.job == ctx.job_id] or (reports if len(reports) == 1 else [])
    return mine[-1].duplication.ratio if mine else None


def ratio_reason(duplication: DuplicationSummary, baseline: float | None) -> str | None:
    """Why the ratio blocks: over the maximum, and higher than the target branch's (the
    existing duplication is baselined: a change that does not add to it passes)."""
    limit, ratio = duplication.max_ratio, duplication.ratio
    if limit is None or ratio is None or ratio <= limit:
        return None
    if baseline is not None and ratio <= baseline:
        return None
    was = f"{baseline}% on the target branch" if baseline is not None else "no baseline"
    return (
        f"duplication ratio {ratio}% is over gates.quality.max_duplication_ratio {limit}% ({was})"
    )


def quality_summary(report: QualityReport) -> str:
    complexity, duplication = report.complexity, report.duplication
    return (
        f"quality: {complexity.functions} functions, complexity mean {complexity.mean} max "
        f"{complexity.max} ({complexity.over_threshold} over {complexity.threshold}); "
        f"{duplication.blocks} copied blocks, {duplication.duplicated_lines} of "
        f"{duplication.lines} lines duplicated ({duplication.ratio}%)"
    )
