"""`conveyor vulndb import|status` and `conveyor scan IMAGE`: the offline vulnerability path."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.cli.output import (
    OutputFormat,
    OutputOption,
    QuietOption,
    VerboseOption,
    console,
    emit_json,
    examples,
    progress,
    verbosity,
)
from conveyor.cli.project import SpecOption
from conveyor.errors import ExitCode

if TYPE_CHECKING:
    from conveyor.supply.osv.db import DBStatus

vulndb_app = typer.Typer(
    help="The offline OSV vulnerability database.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor vulndb import all.zip", "OSV's PyPI export, offline from then on"),
        ("conveyor vulndb import ./osv -o json", "counts and the database digest"),
        ("conveyor vulndb status", "what it holds, and since when"),
        ("conveyor scan shop:1a2b3c4d -o sarif", "scan an image; exit 1 if the gate blocks"),
    ),
)


def register(app: typer.Typer) -> None:
    app.add_typer(vulndb_app, name="vulndb")
    app.command("scan", epilog=vulndb_app.info.epilog)(scan)


@vulndb_app.command("import")
def vulndb_import(
    source: Annotated[Path, typer.Argument(help="An OSV folder (JSON/YAML), .zip or .tar.gz.")],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
    quiet: Annotated[bool, QuietOption] = False,
    verbose: Annotated[bool, VerboseOption] = False,
) -> None:
    """Import OSV advisories (e.g. an `all.zip` export) into the offline database.

    A large export takes a while: a terminal shows a live line until it is done."""
    from conveyor.service.vulns import open_vulndb

    level = verbosity(quiet, verbose)
    with open_vulndb(spec) as db, progress(level, f"importing advisories from {source}") as say:
        say("reading, normalising and indexing the advisories")
        report = db.import_path(source)
    if output is OutputFormat.JSON:
        emit_json(report)
        return
    console.print(
        f"imported {report.imported} advisories ({report.withdrawn} withdrawn, ignored when "
        f"matching); skipped: {report.skipped_unknown_ecosystem} of other ecosystems, "
        f"{report.skipped_unparsable_version} with unparsable versions, "
        f"{len(report.skipped_invalid)} invalid"
    )
    for skipped in report.skipped_invalid[:10]:
        console.print(f"  [yellow]skipped[/] {escape(skipped.name)}: {escape(skipped.reason)}")
    console.print(f"database digest {report.db_digest}")


@vulndb_app.command("status")
def vulndb_status(
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """What the database holds, its digest, how new its advisories are, when imported."""
    from conveyor.service.vulns import open_vulndb

    with open_vulndb(spec) as db:
        status = db.status()
    if output is OutputFormat.JSON:
        emit_json(status)
        return
    console.print(f"{status.advisories} advisories for {status.packages} packages")
    console.print(f"digest   {status.digest}")
    console.print(f"imported {status.imported_at}")
    console.print(f"newest advisory {status.newest_advisory or 'none'}{_age(status)}")
    for source in status.sources:
        console.print(f"  from {escape(str(source))}")


def _age(status: DBStatus) -> str:
    from datetime import UTC, datetime

    from conveyor.spec.durations import format_age

    age = status.age_seconds(datetime.now(UTC))
    return "" if age is None else f" ({format_age(age)} old: the database's age)"


def scan(
    image: Annotated[str, typer.Argument(help="shop@sha256:<digest> or shop:<tag>.")],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="text, json, sarif or vex (CycloneDX 1.6).")
    ] = "text",
) -> int:
    """Scan an image's Python packages against the offline database; exit 1 if the gate blocks."""
    from conveyor.errors import ConveyorError
    from conveyor.service.vulns import scan_image

    if output not in ("text", "json", "sarif", "vex"):
        raise ConveyorError(f"unknown output format {output!r}", hint="text, json, sarif or vex")

    result = scan_image(spec, image)
    if output == "json":
        emit_json(result.report)
    elif output == "sarif":
        sys.stdout.write(json.dumps(result.sarif, indent=2) + "\n")
    elif output == "vex":
        sys.stdout.write(result.vex + "\n")
    else:
        console.print(
            f"{escape(result.image)}: {len(result.findings)} vulnerabilities in "
            f"{len(result.packages)} packages (database {result.db_digest[:19]})"
        )
        for reason in result.decision.reasons:
            console.print(f"  [red]✗[/] {escape(reason)}")
        console.print(result.decision.summary())
    return int(ExitCode.OK if result.decision.passed else ExitCode.PIPELINE_FAILED)
