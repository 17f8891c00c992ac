"""`conveyor audit verify|log|head`: the hash-chained audit log of decisions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from conveyor.cli.environments import opened
from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json
from conveyor.cli.project import SpecOption
from conveyor.errors import ExitCode

audit_app = typer.Typer(help="The audit log: every gate decision, deploy, rollback, flag change.")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def verify(
    head: Annotated[
        str | None, typer.Option("--head", help="The head hash you kept (`audit head`).")
    ] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Recompute the chain; exit 1 if any entry or audited event was edited or deleted."""
    with opened(spec) as (_project, store):
        problems = store.audit_verify(head)
        count = len(store.audit_entries())
    if output is OutputFormat.JSON:
        emit_json({"entries": count, "intact": not problems, "problems": problems})
    elif problems:
        for problem in problems:
            where = f"entry {problem.seq}" if problem.seq else "the log"
            console.print(f"[bold red]✗[/] {where}: {escape(problem.what)}")
    else:
        console.print(f"[green]✓[/] {count} entries, the chain is intact")
    if problems:
        raise typer.Exit(int(ExitCode.PIPELINE_FAILED))


@audit_app.command("log")
def log(
    last: Annotated[int, typer.Option("--last", "-n", min=1, help="The newest N.")] = 20,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """The newest entries: when, what, who, and their hashes."""
    with opened(spec) as (_project, store):
        entries = store.audit_entries(last)
    if output is OutputFormat.JSON:
        emit_json(entries)
        return
    for entry in entries:
        when = datetime.fromtimestamp(entry.ts).strftime("%Y-%m-%d %H:%M:%S")
        console.print(
            f"{entry.seq:>5} {when} {entry.kind:<16} {escape(entry.actor or '-'):<12} "
            f"event {entry.event_id} [dim]{entry.hash[:16]}[/]"
        )


@audit_app.command("head")
def head(spec: Annotated[Path | None, SpecOption] = None) -> None:
    """The newest entry's hash: keep it elsewhere, and `verify --head` it later."""
    with opened(spec) as (_project, store):
        entries = store.audit_entries(1)
    console.print(entries[0].hash if entries else "(empty)")
