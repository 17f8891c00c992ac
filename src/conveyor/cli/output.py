"""Shared output helpers: `--output text|json`, the console, durations and state colours."""

from __future__ import annotations

import dataclasses
import json
import sys
from enum import Enum, StrEnum
from typing import Any

import typer
from rich.console import Console

from conveyor.states import JobState, RunState

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


OutputOption = typer.Option("--output", "-o", help="text for people, json for scripts.")

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


def styled(state: str) -> str:
    style = STATE_STYLE.get(state, "")
    return f"[{style}]{state}[/]" if style else state


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True)
    return value


def elapsed(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return ""
    from conveyor.spec.durations import format_duration

    return format_duration(max(0.0, end - start))
