"""The one place that decides how a command ends: every kind of failure to its exit code,
its error code and its message, shown as text or (with `-o json`) as a JSON object.

Exit codes (docs/cli.md#exit-codes): 0 ok, 1 pipeline or gate failed, 2 usage or spec
error, 3 infrastructure (registry, router, database unreachable), 4 not found, 130
interrupted. A `ConveyorError` carries its own (conveyor.errors); the rest is mapped here.
Kept free of typer and rich at import time: `conveyor --version` imports this module.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TextIO

from conveyor.errors import ConveyorError, ExitCode, SpecError


class ErrorCode(StrEnum):
    """The `code` of a JSON error: one per exit code, and `spec` for conveyor.yml's."""

    FAILED = "failed"
    USAGE = "usage"
    SPEC = "spec"
    INFRASTRUCTURE = "infrastructure"
    NOT_FOUND = "not_found"
    INTERRUPTED = "interrupted"


_CODE_OF_EXIT = {
    ExitCode.PIPELINE_FAILED: ErrorCode.FAILED,
    ExitCode.USAGE: ErrorCode.USAGE,
    ExitCode.INFRASTRUCTURE: ErrorCode.INFRASTRUCTURE,
    ExitCode.NOT_FOUND: ErrorCode.NOT_FOUND,
    ExitCode.INTERRUPTED: ErrorCode.INTERRUPTED,
}

# Exceptions of libraries that mean "a server or database Conveyor needs did not answer",
# by module and class name: naming them here imports none of those libraries.
_UNREACHABLE = {
    ("sqlalchemy.exc", "OperationalError"),
    ("sqlalchemy.exc", "InterfaceError"),
    ("httpx", "TransportError"),
}


@dataclass(frozen=True)
class Location:
    file: str
    line: int | None
    col: int | None


@dataclass(frozen=True)
class Problem:
    """One problem of a spec file (`lint` lists them all)."""

    message: str
    key: str | None
    hint: str | None
    location: Location


@dataclass(frozen=True)
class Failure:
    """How a command ended, when it did not end well."""

    exit_code: ExitCode
    code: ErrorCode
    message: str
    hint: str | None = None
    location: Location | None = None
    problems: tuple[Problem, ...] = ()

    def as_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code.value,
            "exit_code": int(self.exit_code),
            "message": self.message,
            "hint": self.hint,
            "location": _location_json(self.location),
        }
        if self.problems:
            error["problems"] = [
                {
                    "message": p.message,
                    "key": p.key,
                    "hint": p.hint,
                    "location": _location_json(p.location),
                }
                for p in self.problems
            ]
        return {"error": error}


def failure_of(error: BaseException) -> Failure | None:
    """The failure an exception stands for; None for a bug (its traceback must be seen)."""
    if isinstance(error, KeyboardInterrupt):
        return Failure(ExitCode.INTERRUPTED, ErrorCode.INTERRUPTED, "interrupted")
    if isinstance(error, SpecError):
        return _spec_failure(error)
    if isinstance(error, ConveyorError):
        exit_code = ExitCode(error.exit_code)
        return Failure(exit_code, _CODE_OF_EXIT[exit_code], error.message, error.hint)
    if _unreachable(error):
        return Failure(
            ExitCode.INFRASTRUCTURE,
            ErrorCode.INFRASTRUCTURE,
            f"{type(error).__name__}: {_first_line(error)}",
            "check that the database, server or folder is there and reachable "
            "(CONVEYOR_DATABASE_URL, CONVEYOR_STATE_DIR, the registry, the router); "
            "--debug shows the traceback",
        )
    return None


def usage_failure(message: str, exit_code: int) -> Failure:
    """A mistake on the command line that typer found (unknown option, missing argument)."""
    known = exit_code in ExitCode.__members__.values() and exit_code != 0
    code = ExitCode(exit_code) if known else ExitCode.USAGE
    return Failure(code, _CODE_OF_EXIT.get(code, ErrorCode.USAGE), message, "see --help")


def failed(message: str, hint: str | None = None) -> Failure:
    """A pipeline, gate or check that ran and said no (exit 1)."""
    return Failure(ExitCode.PIPELINE_FAILED, ErrorCode.FAILED, message, hint)


def print_json(failure: Failure, stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    out.write(json.dumps(failure.as_json(), indent=2) + "\n")


def print_text(failure: Failure) -> None:
    from rich.markup import escape

    from conveyor.cli.output import err_console

    style = "bold red" if failure.code is not ErrorCode.INTERRUPTED else "red"
    err_console.print(f"[{style}]error:[/] {escape(failure.message)}", soft_wrap=True)
    if failure.hint:
        err_console.print(f"[dim]hint:[/] {escape(failure.hint)}", soft_wrap=True)


def _spec_failure(error: SpecError) -> Failure:
    problems = tuple(
        Problem(
            p.detail,
            p.key_path,
            p.hint,
            Location(p.file, p.line, p.column),
        )
        for p in error.problems
    )
    return Failure(
        ExitCode(error.exit_code),
        ErrorCode.SPEC,
        error.message,
        error.hint,
        Location(error.file, error.line, error.column),
        problems,
    )


def _unreachable(error: BaseException) -> bool:
    """A database, server or file system that failed Conveyor (OSError covers a database
    file that cannot be created, a refused connection, a full disk)."""
    return isinstance(error, OSError) or any(
        (kind.__module__, kind.__name__) in _UNREACHABLE for kind in type(error).__mro__
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _location_json(location: Location | None) -> dict[str, Any] | None:
    if location is None:
        return None
    return {"file": location.file, "line": location.line, "col": location.col}
