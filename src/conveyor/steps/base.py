"""The step Protocol: what a job does once the engine has decided to run it.

A `run:` job is the built-in `shell` step; a `uses:` job names another step. The engine
gives a step its validated parameters and a `StepContext`; the step runs commands only
through the context's executor, so the same step works on every executor backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from pydantic import BaseModel

from conveyor.engine.executors.base import ExecRequest, ExecResult, Executor, LogSink, Stream


@dataclass(frozen=True)
class StepContext:
    job_id: str
    workspace: Path
    env: Mapping[str, str]  # the whole environment for commands, secrets included
    timeout: float | None
    executor: Executor
    log: LogSink

    async def exec(self, argv: list[str], *, cwd: Path | None = None) -> ExecResult:
        request = ExecRequest(
            argv=argv, cwd=cwd or self.workspace, env=dict(self.env), timeout=self.timeout
        )
        return await self.executor.execute(request, self.log)

    def say(self, line: str) -> None:
        self.log.write(Stream.SYSTEM, line)


class Step(Protocol):
    name: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]
    # Bump when the step's behaviour changes, so cached results of the old one are not reused.
    version: ClassVar[str]

    def describe(self, params: BaseModel) -> str:
        """The command line or summary that forms the cache key and the plan's explanation."""
        ...

    async def run(self, params: BaseModel, ctx: StepContext) -> ExecResult: ...
