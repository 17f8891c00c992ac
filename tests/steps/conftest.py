"""Helpers for running scanner steps on fixture repositories, outside any pipeline.

The steps run for real: the local executor starts the real tools from this virtualenv
(its bin folder first on PATH), and `run` is followed by `finalize` as the engine would.
tests/findings imports these helpers too (`from steps.conftest import ...`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from conveyor.engine.executors.base import ExecRequest, ExecResult, LogSink, Stream
from conveyor.engine.executors.local import LocalExecutor
from conveyor.engine.step import NoEvidence, StepContext
from conveyor.findings.model import Finding
from conveyor.findings.sarif import findings_from_log
from conveyor.spec.gates import Gates
from conveyor.steps.findings_step import FindingsStep

VENV_BIN = Path(sys.executable).parent
JOB_ID = "scan"


def write_files(root: Path, files: Mapping[str, str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def tools_env(path: str | None = None) -> dict[str, str]:
    """This environment with the virtualenv's tools first (or only `path`) on PATH."""
    return {**os.environ, "PATH": path or f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}


class BaselineEvidence(NoEvidence):
    """Evidence whose target branch had the given reports of `kind` (SARIF logs by
    default)."""

    def __init__(
        self, baseline: list[dict[str, Any]], gates: Gates | None = None, kind: str = "sarif"
    ) -> None:
        super().__init__(gates)
        self._baseline = [json.dumps(log).encode() for log in baseline]
        self._kind = kind

    def baseline(self, kind: str) -> list[bytes]:
        return self._baseline if kind == self._kind else []


@dataclass
class CountingExecutor:
    """The local executor, counting the commands it was given."""

    name: str = "counting"
    commands: list[list[str]] = field(default_factory=list)

    async def execute(self, request: ExecRequest, sink: LogSink) -> ExecResult:
        self.commands.append(request.argv)
        return await LocalExecutor().execute(request, sink)


@dataclass
class Lines:
    lines: list[tuple[Stream, str]] = field(default_factory=list)

    def write(self, stream: Stream, line: str) -> None:
        self.lines.append((stream, line))

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


@dataclass
class Outcome:
    """What `run` and `finalize` returned, the log, and the published reports."""

    ran: ExecResult
    final: ExecResult
    log: Lines
    evidence: NoEvidence

    def report(self, kind: str) -> Any:
        reports = [content for name, content, _ in self.evidence.published if name == kind]
        assert len(reports) == 1, f"expected one {kind} report, got {len(reports)}"
        return json.loads(reports[0])

    @property
    def sarif(self) -> dict[str, Any]:
        return dict(self.report("sarif"))

    @property
    def findings(self) -> list[Finding]:
        return findings_from_log(self.sarif)

    @property
    def gate_reasons(self) -> list[str]:
        return list(self.report("gate")["reasons"])

    @property
    def locations(self) -> set[tuple[str, str, str]]:
        """(tool, rule, path:line) of every finding."""
        return {(f.tool, f.rule_id, f.location) for f in self.findings}


def context(
    workspace: Path, *, evidence: NoEvidence | None = None, env: Mapping[str, str] | None = None
) -> tuple[StepContext, Lines]:
    log = Lines()
    ctx = StepContext(
        job_id=JOB_ID,
        workspace=workspace,
        env=dict(env or tools_env()),
        timeout=120.0,
        executor=LocalExecutor(),
        log=log,
        evidence=evidence or NoEvidence(),
    )
    return ctx, log


def run_step(
    step: FindingsStep,
    params: BaseModel | Mapping[str, Any],
    workspace: Path,
    *,
    evidence: NoEvidence | None = None,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """`run` then `finalize`, as the engine does on a cache miss."""
    if not isinstance(params, BaseModel):
        params = step.params_model.model_validate(dict(params))
    ctx, log = context(workspace, evidence=evidence, env=env)

    async def both() -> tuple[ExecResult, ExecResult]:
        ran = await step.run(params, ctx)
        return ran, await step.finalize(params, ctx, ran)

    ran, final = asyncio.run(both())
    assert isinstance(ctx.evidence, NoEvidence)
    return Outcome(ran, final, log, ctx.evidence)
