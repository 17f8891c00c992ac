"""The `shell` step: a `run:` job's commands, in order, in bash with -e and pipefail."""

from __future__ import annotations

import shlex
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from conveyor.engine.executors.base import ExecResult, Stream
from conveyor.engine.step import SimpleStep, StepContext


class ShellParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    commands: list[str] = Field(min_length=1)


class ShellStep(SimpleStep):
    name: ClassVar[str] = "shell"
    params_model: ClassVar[type[BaseModel]] = ShellParams
    version: ClassVar[str] = "1"

    def describe(self, params: BaseModel) -> str:
        assert isinstance(params, ShellParams)
        return "\n".join(params.commands)

    def script(self, params: ShellParams) -> str:
        # Echo each command before it runs, as CI logs do; bash -e stops at the first failure.
        lines: list[str] = []
        for command in params.commands:
            lines.append(f"printf '%s\\n' {shlex.quote('$ ' + command)}")
            lines.append(command)
        return "\n".join(lines)

    async def run(self, params: BaseModel, ctx: StepContext) -> ExecResult:
        assert isinstance(params, ShellParams)
        if len(params.commands) == 1:
            # One command: echo it from here and let bash exec it in place (no extra fork).
            ctx.log.write(Stream.STDOUT, f"$ {params.commands[0]}")
            return await ctx.exec(["bash", "-e", "-o", "pipefail", "-c", params.commands[0]])
        return await ctx.exec(["bash", "-e", "-o", "pipefail", "-c", self.script(params)])
