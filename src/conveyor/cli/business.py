"""`conveyor business ENV`: business figures per release and flag variant, with their
confidence sequences (docs/monitoring.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.cli.project import SpecOption

if TYPE_CHECKING:
    from conveyor.observe.business_figures import (
        ArmFigures,
        Bounds,
        BusinessView,
        ComparisonFigure,
    )

EXAMPLES = examples(
    ("conveyor business production", "orders, checkouts, conversion per release and variant"),
    ("conveyor business production -o json", "the same as the API answers it"),
    ("conveyor business production --no-sample", "from the stored scrapes only"),
)


def register(app: typer.Typer) -> None:
    app.command("business", epilog=EXAMPLES)(business)


def business(
    environment: Annotated[str, typer.Argument(help="The environment's name in conveyor.yml.")],
    spec: Annotated[Path | None, SpecOption] = None,
    sample: Annotated[
        bool, typer.Option(help="Scrape the running releases first (and keep the scrape).")
    ] = True,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Business metrics per release and per flag variant, with confidence sequences."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli.remote import path_of
        from conveyor.observe.business_figures import BusinessView

        path = path_of("environments", environment, "business")
        view = remote.get_as(BusinessView, path, {"sample": "true" if sample else "false"})
    else:
        from conveyor.cli.environments import opened
        from conveyor.observe.business_figures import business_view

        with opened(spec) as (project, store):
            view = business_view(project, store, environment, sample=sample)
    if output is OutputFormat.JSON:
        emit_json(view)
        return
    print_view(view)


SHOWN_NOTES = 5
RETIRED = "retired"


def print_view(view: BusinessView) -> None:
    console.print(f"[bold]{escape(view.environment)}[/]: business metrics (intervals at 95 %)")
    _arms("release", view.releases, lambda a: a.release_id + (f" ({a.state})" if a.state else ""))
    _compared(view.release_comparisons, f"against {view.reference_release or '-'}")
    if view.variants:
        _arms("flag variant", view.variants, lambda a: f"{a.flag or '-'}: {a.variant}")
        _compared(view.variant_comparisons, "against the control variant")
    # Notes of live releases first; a retired release's (scrapes it missed as it stopped)
    # are counted, not listed: `-o json` has them all.
    live = [n for a in view.releases if a.state != RETIRED for n in a.notes]
    for note in live[:SHOWN_NOTES]:
        console.print(f"[yellow]note[/] {escape(note)}")
    hidden = sum(len(a.notes) for a in view.releases) - min(len(live), SHOWN_NOTES)
    if hidden:
        console.print(f"[dim]{hidden} more notes (mostly releases that stopped): -o json[/]")


def _arms(title: str, arms: list[ArmFigures], name_of: Callable[[ArmFigures], str]) -> None:
    if not arms:
        console.print(f"no {title} has business figures yet")
        return
    table = Table(box=None, pad_edge=False)
    table.add_column(title)
    for metric in arms[0].metrics:
        table.add_column(metric)
    for ratio in arms[0].ratios:
        table.add_column(ratio.name)
    for arm in arms:
        cells = [str(value) for value in arm.metrics.values()]
        ratios = [
            "not a rate" if not r.consistent else f"{_pct(r.value)} {_bounds(r.interval)}"
            for r in arm.ratios
        ]
        table.add_row(escape(name_of(arm)), *cells, *ratios)
    console.print(table)


def _compared(comparisons: list[ComparisonFigure], heading: str) -> None:
    for c in comparisons:
        console.print(
            f"  {escape(c.ratio)} of {escape(c.arm)} {heading}: ratio {_bounds(c.ratio_of_rates)}"
            f", difference {_bounds(c.difference, percent=True)}"
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _bounds(bounds: Bounds, *, percent: bool = False) -> str:
    def shown(x: float | None) -> str:
        if x is None:
            return "∞"
        return f"{x * 100:+.1f} pt" if percent else f"{x:.3g}"

    if not percent and bounds.high is not None and bounds.high <= 1.0 and bounds.low >= 0.0:
        return f"[{bounds.low:.1%}, {bounds.high:.1%}]"
    return f"[{shown(bounds.low)}, {shown(bounds.high)}]"
