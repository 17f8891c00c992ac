"""The `shell` step: a `run:` job's commands, in order, in bash with -e and pipefail."""

from __future__ import annotations

import re
import shlex
import shutil
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
            # One command: echo it from here, then run it without bash if bash would do
            # nothing but exec it, else let bash exec it in place (no extra fork).
            command = params.commands[0]
            ctx.log.write(Stream.STDOUT, f"$ {command}")
            argv = direct_argv(command, ctx.env.get("PATH"))
            return await ctx.exec(argv or ["bash", "-e", "-o", "pipefail", "-c", command])
        return await ctx.exec(["bash", "-e", "-o", "pipefail", "-c", self.script(params)])


# A command made only of these characters has no quoting, expansion, redirection, globbing,
# comment or control operator: bash would split it on spaces and exec the first word.
_PLAIN_COMMAND = re.compile(r"[A-Za-z0-9_./:,+@%= -]+")
# Words bash runs itself (`compgen -b -k`): never exec'd as a program of the same name.
_BASH_OWN_WORDS = frozenset(
    """
    . : [ [[ ]] ! { } alias bg bind break builtin caller case cd command compgen complete
    compopt continue coproc declare dirs disown do done echo elif else enable esac eval exec
    exit export false fc fg fi for function getopts hash help history if in jobs kill let
    local logout mapfile popd printf pushd pwd read readarray readonly return select set
    shift shopt source suspend test then time times trap true type typeset ulimit umask
    unalias unset until wait while
    """.split()  # noqa: SIM905 - the list as `compgen` prints it, easy to check
)


def direct_argv(command: str, path: str | None) -> list[str] | None:
    """The argv bash would exec for `command`, when running it without bash changes nothing;
    else None. GNU make does the same for its recipes: a bash start-up costs ~1.5 ms a job.

    Only a plain command qualifies: no character outside `_PLAIN_COMMAND`; a first word
    that is a program found on the job's own, absolute PATH (not a builtin or keyword, not
    `NAME=value`, not a path, which is relative to the job's folder); and a program the
    kernel can exec (`#!` or ELF), not a script bash would read itself. So exit codes,
    `command not found` (127) and the environment stay exactly as under bash.
    """
    if _PLAIN_COMMAND.fullmatch(command) is None or not path:
        return None
    words = command.split()
    if not words or "=" in words[0] or "/" in words[0] or words[0] in _BASH_OWN_WORDS:
        return None
    if any(not folder.startswith("/") for folder in path.split(":")):
        return None  # `.` or a relative folder means the job's folder, not ours
    program = shutil.which(words[0], path=path)
    if program is None or not _kernel_executes(program):
        return None  # bash says `command not found` (127), or reads the script itself
    return [program, *words[1:]]


def _kernel_executes(program: str) -> bool:
    try:
        with open(program, "rb") as file:
            head = file.read(4)
    except OSError:
        return False
    return head == b"\x7fELF" or head.startswith(b"#!")
