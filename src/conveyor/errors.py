"""The one user-facing error type and the documented exit codes.

Everything a user can get wrong raises `ConveyorError` (or a subclass); the CLI's single
handler turns it into one clear line plus a hint (or a JSON object with `-o json`) and the
matching exit code. Tracebacks are shown only with `--debug`.

The exit code of each error class is its `exit_code`, set here for the kinds of error:

| class                 | exit code                |
|-----------------------|--------------------------|
| `ConveyorError`       | 2 `USAGE`                |
| `SpecError(s)`        | 2 `USAGE`                |
| `InfrastructureError` | 3 `INFRASTRUCTURE`       |
| `NotFoundError`       | 4 `NOT_FOUND`            |

The CLI (`conveyor.cli.failures`) maps everything else that ends a command (a usage error
of the command line, an unreachable database or server, Ctrl-C) onto the same codes.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PIPELINE_FAILED = 1
    USAGE = 2  # the command line or conveyor.yml is wrong
    INFRASTRUCTURE = 3  # a registry, router, database or tool Conveyor needs failed
    NOT_FOUND = 4  # the run, job, release, image... named does not exist
    INTERRUPTED = 130


class ConveyorError(Exception):
    """An error caused by input or circumstances the user can fix."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class SpecError(ConveyorError):
    """A problem in a spec file, located by file:line:col and key path."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        column: int | None = None,
        key_path: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.key_path = key_path
        self.detail = message
        super().__init__(self._render(message), hint)

    @property
    def location(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def _render(self, message: str) -> str:
        key = f" {self.key_path}:" if self.key_path else ""
        return f"{self.location}:{key} {message}"

    @property
    def problems(self) -> tuple[SpecError, ...]:
        """Every problem found; one, unless this is a `SpecErrors`."""
        return (self,)


class SpecErrors(SpecError):
    """Several problems in one spec file, all reported at once (as linters do).

    Its location, key path and hint are the first problem's; its message lists every
    problem on a line of its own, `file:line:col: key: message (hint)`.
    """

    def __init__(self, problems: list[SpecError]) -> None:
        first = problems[0]
        self._all = tuple(problems)
        super().__init__(
            first.detail,
            file=first.file,
            line=first.line,
            column=first.column,
            key_path=first.key_path,
            hint=first.hint,
        )
        lines = [f"{len(problems)} problems in {first.file}"]
        lines += [str(p) + (f" ({p.hint})" if p.hint else "") for p in problems]
        self.message = "\n".join(lines)
        self.hint = "fix them, then `conveyor lint` checks the file again"
        self.args = (self.message,)

    @property
    def problems(self) -> tuple[SpecError, ...]:
        return self._all


class NotFoundError(ConveyorError):
    """A run, job or artifact the user named does not exist."""

    exit_code = ExitCode.NOT_FOUND


class InfrastructureError(ConveyorError):
    """Conveyor itself could not do its work (disk, store, registry, router, executor); not
    the user's code."""

    exit_code = ExitCode.INFRASTRUCTURE
