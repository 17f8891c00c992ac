"""The `commit-messages` step: an optional gate on the messages of the commits a run
brings in (since the branch's last successful run, `CONVEYOR_PREVIOUS_SHA`; HEAD alone on
a first run): each must be a Conventional Commits header of an allowed type, and link a
requirement or defect id (`Fixes #12`, `Refs PROJ-45`, a `Jira:` trailer...). Merge
commits git wrote itself are not checked unless asked.

    jobs:
      commit-messages:
        uses: commit-messages
        with: {require_link: true, types: [feat, fix, docs, chore]}

It works in `finalize`: the range depends on the last successful run, not on the job's
input files. The decision is a `gate` report naming each commit that fails and why.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import FinalizeOnlyStep, StepContext, failed, passed
from conveyor.errors import ConveyorError
from conveyor.findings.reports import GateReport
from conveyor.vcs.commit_messages import CONVENTIONAL_TYPES, CommitMessage, log_messages

GATE = "commit-messages"
SHOWN = 20  # failing commits named in the log; the report has every one


class CommitMessagesParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    require_conventional: bool = Field(
        default=True, description="Each subject is a Conventional Commits header."
    )
    require_link: bool = Field(
        default=True,
        description="Each message links a requirement or defect (Fixes #12, Refs PROJ-45).",
    )
    types: list[str] = Field(
        default_factory=lambda: list(CONVENTIONAL_TYPES),
        min_length=1,
        description="The allowed Conventional Commits types.",
    )
    check_merges: bool = Field(default=False, description="Check git's merge commits too.")
    since: str | None = Field(
        default=None,
        max_length=200,
        description="Check the commits since this revision instead of the last successful "
        "run's (e.g. origin/main).",
    )
    max_commits: int = Field(default=1000, ge=1, le=100_000)


@dataclass(frozen=True)
class CommitVerdict:
    sha: str
    subject: str
    problems: tuple[str, ...]


class CommitMessagesStep(FinalizeOnlyStep):
    name: ClassVar[str] = "commit-messages"
    params_model: ClassVar[type[BaseModel]] = CommitMessagesParams
    version: ClassVar[str] = "1"
    why_in_finalize: ClassVar[str] = (
        "the commits it checks depend on the branch's last successful run"
    )

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        assert isinstance(params, CommitMessagesParams)
        started = time.monotonic()
        try:
            commits = await asyncio.to_thread(_commits_of_run, params, ctx)
        except ConveyorError as error:
            ctx.say(f"{GATE}: {error}")
            return failed(f"{GATE}: cannot read the commits: {error}")
        verdicts = [judge(commit, params) for commit in commits]
        failing = [v for v in verdicts if v.problems]
        reasons = [f"{v.sha[:12]} {v.subject[:100]!r}: {'; '.join(v.problems)}" for v in failing]
        counts = {
            "commits": len(verdicts),
            "not_conventional": sum(any("Conventional" in p for p in v.problems) for v in failing),
            "unlinked": sum(any("links no" in p for p in v.problems) for v in failing),
        }
        report = GateReport(
            job=ctx.job_id, gate=GATE, passed=not failing, reasons=reasons, counts=counts
        )
        ctx.evidence.publish("gate", report.to_bytes(), {"gate": GATE, "passed": not failing})
        for reason in reasons[:SHOWN]:
            ctx.say(f"  ✗ {reason}")
        if len(reasons) > SHOWN:
            ctx.say(f"  ... {len(reasons) - SHOWN} more: `conveyor report` has each one")
        summary = f"{GATE}: {len(verdicts) - len(failing)}/{len(verdicts)} commits pass"
        ctx.say(summary)
        took = time.monotonic() - started
        if not failing:
            return passed(took, summary)
        return failed(f"{summary}: {reasons[0]}", took)


def _commits_of_run(params: CommitMessagesParams, ctx: StepContext) -> list[CommitMessage]:
    until = ctx.env.get("CONVEYOR_COMMIT_SHA") or "HEAD"
    since = params.since or ctx.env.get("CONVEYOR_PREVIOUS_SHA") or None
    limit = params.max_commits if since else 1
    try:
        commits = log_messages(ctx.workspace, until, since, limit=limit, merges=params.check_merges)
    except ConveyorError:
        if since is None:
            raise
        ctx.say(f"{GATE}: {since[:12]} is not in this history; checking {until[:12]} alone")
        commits = log_messages(ctx.workspace, until, None, limit=1, merges=True)
    ctx.say(f"{GATE}: {len(commits)} commit(s) since {since[:12] if since else 'the start'}")
    return commits


def judge(commit: CommitMessage, params: CommitMessagesParams) -> CommitVerdict:
    parsed = commit.parsed()
    problems: list[str] = []
    if params.require_conventional:
        allowed = {kind.lower() for kind in params.types}
        if parsed.header is None:
            problems.append("not a Conventional Commits header (type(scope): subject)")
        elif parsed.header.type not in allowed:
            problems.append(
                f"type {parsed.header.type!r} is not one of {', '.join(sorted(allowed))} "
                "(Conventional Commits)"
            )
    if params.require_link and not parsed.linked:
        problems.append("links no requirement or defect (add `Refs PROJ-45` or `Fixes #12`)")
    return CommitVerdict(commit.sha, parsed.subject, tuple(problems))
