"""`conveyor slo ...`: error budgets, burn rates and alerts of the SLOs in conveyor.yml;
Prometheus rules and OpenSLO documents for other tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.cli.project import SpecOption
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.observe.slo import SloStatus

slo_app = typer.Typer(
    help="SLOs: error budget remaining, burn rates, multiwindow alerts, rules, OpenSLO.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor slo status", "budget left, burn rate per window, what fires"),
        ("conveyor slo status --env production -o json", "the same, for a script"),
        ("conveyor slo rules > slo-rules.yml", "Prometheus recording and alerting rules"),
        ("conveyor slo export --openslo > slos.yaml", "the SLOs as OpenSLO v1 documents"),
        ("conveyor slo import slos.yaml", "OpenSLO documents as conveyor.yml's `slos:`"),
    ),
)
EnvOption = typer.Option("--env", "-e", help="One environment of conveyor.yml (default: all).")


def register(app: typer.Typer) -> None:
    app.add_typer(slo_app, name="slo")


@slo_app.command("status")
def slo_status(
    environment: Annotated[str | None, EnvOption] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Each SLO's error budget remaining over its rolling window, its burn rate over each
    alert window, and the alerts that fire now, from the stored golden-signal samples."""
    from conveyor.cli.environments import opened
    from conveyor.observe.slo import project_status

    with opened(spec) as (project, store):
        found = project_status(project, store, environment)
    if output is OutputFormat.JSON:
        emit_json({"items": found, "next_cursor": None})
        return
    if not found:
        console.print("no SLOs in conveyor.yml: add `slos:` to an environment (docs/monitoring.md)")
        return
    for status in found:
        _print_status(status)


def _print_status(status: SloStatus) -> None:
    from conveyor.spec.durations import format_duration

    good = "no requests" if status.good_percent is None else f"{status.good_percent:.3f}% good"
    budget = (
        "budget untouched (no requests)"
        if status.budget_remaining is None
        else f"{status.budget_remaining * 100:.1f}% of the error budget left"
    )
    scale = f", time scale {status.time_scale:g}" if status.time_scale != 1 else ""
    console.print(
        f"[bold]{escape(status.environment)}/{escape(status.slo)}[/] ({status.kind}, "
        f"objective {status.objective:g}% over {format_duration(status.window)}{scale}): "
        f"{good}, {budget}"
    )
    table = Table(box=None, pad_edge=False)
    for column in ("window", "requests", "bad", "error ratio", "burn rate"):
        table.add_column(column, justify="right")
    for burn in status.burn_rates:
        table.add_row(
            format_duration(burn.window),
            f"{burn.total:g}",
            f"{burn.bad:g}",
            "-" if burn.error_ratio is None else f"{burn.error_ratio:.4%}",
            "-" if burn.burn_rate is None else f"{burn.burn_rate:.2f}x",
        )
    console.print(table)
    for firing in status.firing:
        console.print(
            f"  [red]{firing.severity}[/]: {firing.long_burn_rate:.1f}x over "
            f"{format_duration(firing.long_window)} and {firing.short_burn_rate:.1f}x over "
            f"{format_duration(firing.short_window)} (above {firing.factor:g}x)"
        )
    if not status.firing:
        console.print("  [green]no alert fires[/]")


@slo_app.command("rules")
def slo_rules(
    environment: Annotated[str | None, EnvOption] = None,
    spec: Annotated[Path | None, SpecOption] = None,
) -> None:
    """Prometheus recording rules (the error ratio over each window, the budget left) and
    alerting rules (the workbook's multiwindow burn rates) for the SLOs: a rules file."""
    from conveyor.observe.rules import rules_document
    from conveyor.observe.slo import project_slos
    from conveyor.service.project import Project
    from conveyor.spec.environments import Environment

    slos = project_slos(Project.locate(spec), environment)
    if not any(slos.values()):
        raise ConveyorError(
            "no SLOs in conveyor.yml to write rules for",
            hint="add `slos:` to an environment (docs/monitoring.md)",
        )
    environments = {name: Environment(slos=found) for name, found in slos.items()}
    sys.stdout.write(rules_document(environments))


@slo_app.command("export")
def slo_export(
    openslo: Annotated[
        bool, typer.Option("--openslo", help="As OpenSLO v1 SLO documents (the only format).")
    ] = False,
    environment: Annotated[str | None, EnvOption] = None,
    service: Annotated[
        str | None, typer.Option("--service", help="spec.service (default: the folder's name).")
    ] = None,
    spec: Annotated[Path | None, SpecOption] = None,
) -> None:
    """The SLOs as OpenSLO v1 `SLO` documents, one per SLO, separated by `---`."""
    from conveyor.observe.openslo import export_documents
    from conveyor.observe.slo import project_slos
    from conveyor.service.project import Project

    if not openslo:
        raise ConveyorError("say the format: --openslo", hint="conveyor slo export --openslo")
    project = Project.locate(spec)
    slos = project_slos(project, environment)
    if not any(slos.values()):
        raise ConveyorError(
            "no SLOs in conveyor.yml to export",
            hint="add `slos:` to an environment (docs/monitoring.md)",
        )
    sys.stdout.write(export_documents(slos, service or project.directory.name))


@slo_app.command("import")
def slo_import(
    file: Annotated[Path, typer.Argument(help="An OpenSLO v1 file: one or more documents.")],
    environment: Annotated[
        str | None,
        typer.Option("--env", "-e", help="For SLOs that name no environment."),
    ] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Read OpenSLO v1 `SLO` documents and print them as conveyor.yml's `slos:` (to paste
    under `environments:`); what Conveyor cannot evaluate is an error at its line."""
    import yaml

    from conveyor.observe.openslo import import_documents, spec_shape

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConveyorError(f"cannot read {file}: {error}") from None
    shape = spec_shape(import_documents(text, str(file), environment))
    if output is OutputFormat.JSON:
        emit_json(shape)
        return
    sys.stdout.write(yaml.safe_dump(shape, sort_keys=False))
