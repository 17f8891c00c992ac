"""`conveyor can-i-deploy SERVICE@VERSION --to ENV`: are its contracts there verified?
(docs/contracts.md). Exit 0: yes; 1: no, each unverified contract named."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.cli.project import SpecOption
from conveyor.errors import ConveyorError, ExitCode

EXAMPLES = examples(
    ("conveyor can-i-deploy shop@1a2b3c4d --to production", "a commit of the shop"),
    ("conveyor can-i-deploy payments@sha256:3738ca... --to staging", "an image of payments"),
    ("conveyor can-i-deploy shop@1a2b3c4d --to staging -o json", "every check, for a script"),
)


def register(app: typer.Typer) -> None:
    app.command("can-i-deploy", epilog=EXAMPLES)(can_i_deploy)


def can_i_deploy(
    target: Annotated[str, typer.Argument(help="SERVICE@VERSION: a commit or an image digest.")],
    to: Annotated[str, typer.Option("--to", help="The environment to deploy to.")],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Whether every contract of SERVICE@VERSION with what runs in an environment is verified."""
    from conveyor.cli.environments import opened
    from conveyor.service.contracts import can_i_deploy as answer_of

    service, at, version = target.partition("@")
    if not at or not service or not version:
        raise ConveyorError(
            f"{target!r}: name a service and a version, SERVICE@VERSION",
            hint="e.g. shop@1a2b3c4d (a commit) or shop@sha256:... (an image)",
        )
    with opened(spec) as (project, store):
        answer = answer_of(project, store, service, version, to)
    if output is OutputFormat.JSON:
        emit_json(answer.to_json())
    else:
        for check in answer.checks:
            mark = "[green]✓[/]" if check.verified else "[red]✗[/]"
            console.print(f"{mark} {escape(check.detail)}")
            for failure in check.failures:
                console.print(f"    ✗ {escape(failure.interaction)!r}: {escape(failure.mismatch)}")
        verdict = "yes" if answer.ok else "no"
        console.print(f"can-i-deploy {escape(target)} to {escape(to)}: [bold]{verdict}[/]")
    if not answer.ok:
        raise typer.Exit(ExitCode.PIPELINE_FAILED)
