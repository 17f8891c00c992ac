"""`conveyor demo`: the whole loop, as far as it is built, on the sample service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from conveyor.cli.output import console
from conveyor.errors import ExitCode


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    sample: Annotated[
        Path | None, typer.Option("--sample", help="The sample service folder.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="State changes only.")] = False,
) -> int:
    """Copy the sample service into a fresh git repository and carry it through its pipeline."""
    from conveyor.cli.live import ConsoleReporter
    from conveyor.service.demo import run_demo

    def announce(text: str) -> None:
        console.rule(f"[bold]{escape(text)}[/]", align="left")

    result = run_demo(ConsoleReporter(console, show_logs=not quiet), announce, sample=sample)
    spec = result.repository / "conveyor.yml"
    console.rule("[bold]where to look next[/]", align="left")
    for command in ("status", "history", "logs"):
        console.print(f"  conveyor {command} -f {spec}")
    console.print(f"  cd {result.repository} && conveyor plan --explain")
    ok = all(run.state.value == "success" for run in result.runs)
    return int(ExitCode.OK if ok else ExitCode.PIPELINE_FAILED)
