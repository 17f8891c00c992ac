"""Shared output helpers: `--output text|json`, `--quiet`/`--verbose`, the console, live
progress, durations and state colours."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum, StrEnum
from typing import Any

import typer
from rich.align import AlignMethod
from rich.console import Console, ConsoleDimensions
from rich.rule import Rule
from rich.style import Style
from rich.text import Text

from conveyor.states import JobState, RunState

# Off a terminal (a pipe, a file, a CI log) lines are not wrapped: rich would otherwise
# assume 80 columns and break every longer line and table cell, which hurts `grep` and
# logs. COLUMNS, when set, still decides.
UNWRAPPED_WIDTH = 10_000
RULE_WIDTH = 100  # a rule off a terminal: a heading, not 10,000 dashes


class _Console(Console):
    """A rich Console that does not wrap off a terminal unless COLUMNS says so."""

    def _unwrapped(self) -> bool:
        return not self.is_terminal and not self._environ.get("COLUMNS", "").isdigit()

    @property
    def size(self) -> ConsoleDimensions:
        if self._width is None and self._unwrapped():
            return ConsoleDimensions(UNWRAPPED_WIDTH, super().size.height)
        return super().size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size

    def rule(
        self,
        title: str | Text = "",
        *,
        characters: str = "─",
        style: str | Style = "rule.line",
        align: AlignMethod = "center",
    ) -> None:
        width = min(self.width, RULE_WIDTH) if self._unwrapped() else self.width
        rule = Rule(title, characters=characters, style=style, align=align)
        self.print(rule, width=width)


console = _Console(highlight=False)
err_console = _Console(stderr=True, highlight=False)


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


OutputOption = typer.Option("--output", "-o", help="text for people, json for scripts.")
QuietOption = typer.Option("--quiet", "-q", help="No progress: the result only.")
VerboseOption = typer.Option("--verbose", "-v", help="Every progress line, no live display.")


class Verbosity(IntEnum):
    QUIET = 0  # the result only
    NORMAL = 1  # progress: a live display on a terminal, plain lines otherwise
    VERBOSE = 2  # every progress line, never a live display


def verbosity(quiet: bool, verbose: bool) -> Verbosity:
    if quiet and verbose:
        from conveyor.errors import ConveyorError

        raise ConveyorError("--quiet and --verbose contradict each other", hint="pick one")
    return Verbosity.QUIET if quiet else Verbosity.VERBOSE if verbose else Verbosity.NORMAL


Say = Callable[[str], None]
TRAFFIC_PREFIX = "traffic:"  # the deploy controller's weights, e.g. a canary's 20%
# Results, and release hooks with their output (a migration's lines stay in view).
KEPT_PREFIXES = ("judge:", "rolled back", "rolling back", "deploy failed", "smoke", "hook", "[")


@contextmanager
def progress(level: Verbosity, title: str) -> Iterator[Say]:
    """A `say(message)` for long work, on standard error (standard output keeps the
    result, JSON included). On a terminal at normal verbosity: one live line (a spinner,
    the title and the latest message, e.g. a canary's step with its weight or the judge's
    evidence); otherwise a plain `· message` line each, so logs and tests stay readable."""
    if level is Verbosity.QUIET:
        yield _silent
        return
    if level is Verbosity.NORMAL and err_console.is_terminal:
        from rich.markup import escape

        shown = {"traffic": ""}
        with err_console.status(f"[bold]{escape(title)}[/]") as status:

            def update(message: str) -> None:
                if message.startswith(TRAFFIC_PREFIX):  # the weights stay in view
                    shown["traffic"] = f" [dim]·[/] {escape(message)}"
                elif message.startswith(KEPT_PREFIXES):  # evidence and results stay
                    err_console.print(f"[dim]·[/] {escape(message)}", soft_wrap=True)
                status.update(
                    f"[bold]{escape(title)}[/]{shown['traffic']} [dim]·[/] {escape(message)}"
                )

            yield update
        return
    yield _plain_line


def _silent(_message: str) -> None:
    pass


def _plain_line(message: str) -> None:
    from rich.markup import escape

    err_console.print(f"[dim]·[/] {escape(message)}", soft_wrap=True)


STATE_STYLE: dict[str, str] = {
    JobState.SUCCESS: "green",
    JobState.CACHED: "cyan",
    JobState.FAILED: "bold red",
    JobState.RUNNING: "yellow",
    JobState.WAITING: "magenta",
    JobState.PENDING: "dim",
    JobState.SKIPPED: "dim",
    JobState.BLOCKED: "red",
    JobState.CANCELLED: "red",
    JobState.SUPERSEDED: "dim",
    JobState.INTERRUPTED: "red",
    RunState.SUCCESS: "green",
    RunState.FAILED: "bold red",
}


def examples(*pairs: tuple[str, str]) -> str:
    """A command's or group's epilog: an Examples section, kubectl's way (what it does as
    a comment, then the command), so that nothing wraps in 80 columns."""
    from rich.markup import escape

    lines = [f"  [dim]# {escape(what)}[/]\n  {escape(command)}" for command, what in pairs]
    return "[bold]Examples[/]\n" + "\n".join(lines)


def styled(state: str) -> str:
    style = STATE_STYLE.get(state, "")
    return f"[{style}]{state}[/]" if style else state


def emit_json(data: Any) -> None:
    from conveyor.service.jsonable import to_jsonable  # one shape for the CLI and the API

    sys.stdout.write(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def emit_json_line(data: Any) -> None:
    """One compact JSON object on a line of its own (JSON Lines), flushed: for streams."""
    from conveyor.service.jsonable import to_jsonable

    sys.stdout.write(json.dumps(to_jsonable(data)) + "\n")
    sys.stdout.flush()


def elapsed(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return ""
    from conveyor.spec.durations import format_duration

    return format_duration(max(0.0, end - start))
