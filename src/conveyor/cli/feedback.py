"""`conveyor feedback ENV`: user feedback per release and flag variant (observe/feedback.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.environments import EnvArgument, opened
from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.cli.project import SpecOption

if TYPE_CHECKING:
    from conveyor.observe.feedback import FeedbackReport, RatingSummary

EXAMPLES = examples(
    ("conveyor feedback production", "ratings per release and variant, and rating drops"),
    ("conveyor feedback production --themes", "what low ratings say more than the others"),
    ("conveyor feedback staging --release R -o json", "one release's code, for a script"),
)


def register(app: typer.Typer) -> None:
    app.command("feedback", epilog=EXAMPLES)(feedback)


def feedback(
    environment: Annotated[str, EnvArgument],
    release: Annotated[
        str | None, typer.Option("--release", help="Only this release (and its code's).")
    ] = None,
    themes: Annotated[
        bool, typer.Option("--themes", help="Terms over-represented in low ratings.")
    ] = False,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Users' ratings (1-5) per release and per flag variant, with 95 % confidence
    sequences; a release or variant rated significantly below its baseline is shown as a
    rating drop. Posts arrive at the environment's router (POST /.conveyor/feedback)."""
    from conveyor.cli import target
    from conveyor.observe.feedback import FeedbackReport, environment_feedback

    remote = target.client()
    if remote is not None:
        path = f"/api/v1/environments/{quote(environment, safe='')}/feedback"
        query = {"release": release, "themes": "true" if themes else None}
        report = remote.get_as(FeedbackReport, path, query)
    else:
        with opened(spec) as (project, store):
            report = environment_feedback(
                project, store, environment, release_id=release, with_themes=themes
            )
    if output is OutputFormat.JSON:
        emit_json(report)
        return
    print_report(report)


def print_report(report: FeedbackReport) -> None:
    if report.router_answers:
        answers = ", ".join(f"{code}: {n}" for code, n in sorted(report.router_answers.items()))
        console.print(f"router's answers to posts since it started: {answers}")
    if not report.count:
        console.print(f"{escape(report.environment)}: no feedback yet")
        return
    console.print(f"{escape(report.environment)}: {report.count} ratings")
    console.print(_table("release", report.releases))
    if report.variants:
        console.print(_table("flag=variant", report.variants))
    for drop in report.drops:
        console.print(f"[red]rating drop[/]: {escape(drop.detail)}")
    if report.themes is not None:
        _print_themes(report)


def _table(title: str, summaries: list[RatingSummary]) -> Table:
    table = Table(title_justify="left", box=None, pad_edge=False)
    for column in (title, "ratings", "mean", "95 % sequence", "1-2"):
        table.add_column(column, no_wrap=column == title)
    for s in summaries:
        name = f"{s.flag}={s.variant}" if s.flag is not None else s.release_id or "(unknown)"
        table.add_row(
            escape(name),
            str(s.count),
            f"{s.mean:.2f}" if s.mean is not None else "-",
            f"{s.low:.2f} .. {s.high:.2f}" if s.low is not None and s.high is not None else "-",
            str(s.low_ratings),
        )
    return table


def _print_themes(report: FeedbackReport) -> None:
    themes = report.themes
    assert themes is not None
    console.print(
        f"themes of the low ratings ({themes.low_texts} texts against {themes.other_texts}):"
    )
    if not themes.low:
        console.print("  none stands out")
    for theme in themes.low:
        console.print(
            f"  {escape(theme.term)}: {theme.low_texts} of the low-rated texts "
            f"({theme.low_share:.0%} against {theme.other_share:.0%}), z {theme.z:.1f}"
        )
    if themes.frequent:
        terms = ", ".join(f"{escape(term)} ({count})" for term, count in themes.frequent)
        console.print(f"most frequent: {terms}")
