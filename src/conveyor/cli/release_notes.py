"""`conveyor release notes ENV [RELEASE]`: a release's notes (its commits grouped by type,
with their linked requirement and defect ids), as Markdown or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from conveyor.cli.environments import EnvArgument, opened
from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json
from conveyor.cli.project import SpecOption

ReleaseArgument = typer.Argument(help="A release id (default: the latest successful one).")


def notes(
    environment: Annotated[str, EnvArgument],
    release: Annotated[str | None, ReleaseArgument] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """A release's notes: features, fixes and others since the release it replaced."""
    from conveyor.observe.release_notes import release_notes, to_markdown

    with opened(spec) as (project, store):
        found = release_notes(project, store, environment, release)
    if output is OutputFormat.JSON:
        emit_json(found)
        return
    console.print(to_markdown(found), markup=False, end="")


def register_into(group: typer.Typer) -> None:
    group.command("notes")(notes)
