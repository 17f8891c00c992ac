"""`conveyor audit verify|log|head`: the hash-chained audit log of decisions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.cli.environments import opened
from conveyor.cli.output import (
    OutputFormat,
    OutputOption,
    console,
    emit_json,
    err_console,
    examples,
)
from conveyor.cli.project import SpecOption
from conveyor.errors import ExitCode

if TYPE_CHECKING:
    from conveyor.service.audit import AuditVerdict

audit_app = typer.Typer(
    help="The audit log: every gate decision, deploy, rollback, flag change.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor audit verify", "recompute the chain; exit 1 if it was tampered with"),
        ("conveyor audit head > head.txt", "keep the head elsewhere..."),
        ("conveyor audit verify --head $(cat head.txt)", "...and hold the log to it later"),
        ("conveyor audit log -n 50 -o json", "the newest entries, for a script"),
    ),
)


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
    """Recompute the chain and hold it to the last signed head; exit 1 if anything was
    edited, deleted or rewritten. An intact chain's head is signed with the project's key."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        verdict = remote_commands.audit_verify(remote, head)
    else:
        from conveyor.service import audit

        with opened(spec) as (project, store):
            verdict = audit.verify(project, store, head)
    if output is OutputFormat.JSON:
        emit_json(
            {
                "entries": verdict.entries,
                "intact": verdict.intact,
                "problems": verdict.problems,
                "checked_against": verdict.checked_against,
                "signed": verdict.signed,
                "notes": verdict.notes,
            }
        )
    else:
        _print_verdict(verdict)
    if not verdict.intact:
        raise typer.Exit(int(ExitCode.PIPELINE_FAILED))


def _print_verdict(verdict: AuditVerdict) -> None:
    for problem in verdict.problems:
        where = f"entry {problem.seq}" if problem.seq else "the log"
        console.print(f"[bold red]✗[/] {where}: {escape(problem.what)}")
    if verdict.intact:
        console.print(f"[green]✓[/] {verdict.entries} entries, the chain is intact")
        if verdict.checked_against is not None:
            console.print(
                f"  it still holds the signed head of {verdict.checked_against.entries} entries"
            )
        if verdict.signed is not None:
            console.print(
                f"  head of {verdict.signed.entries} entries signed by key "
                f"{verdict.signed.key_id[:16]}"
            )
    for note in verdict.notes:
        console.print(f"  [yellow]![/] {escape(note)}")


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
def head(
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """The newest entry's hash: keep it elsewhere, and `verify --head` it later.

    The chain is verified first, and its head signed with the project's key."""
    from conveyor.service import audit

    with opened(spec) as (project, store):
        verdict = audit.verify(project, store)
        entries = store.audit_entries(1)
    if output is OutputFormat.JSON:
        emit_json(
            {
                "head": entries[0].hash if entries else None,
                "seq": entries[0].seq if entries else 0,
                "intact": verdict.intact,
            }
        )
    else:
        console.print(entries[0].hash if entries else "(empty)")
    if not verdict.intact:
        if output is OutputFormat.TEXT:  # JSON says it with "intact": false
            err_console.print(
                "[bold red]✗[/] the chain does not verify: `conveyor audit verify` says why"
            )
        raise typer.Exit(int(ExitCode.PIPELINE_FAILED))
