"""`conveyor insights ...`: what production and the pipeline taught over a period. The
group alone; its commands come from their modules (`insights_summary`: summary, file)."""

from __future__ import annotations

import typer

from conveyor.cli import insights_summary
from conveyor.cli.output import examples

insights_app = typer.Typer(
    help="What a period taught, and the requirements it filed.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor insights summary --since 30d", "the period's actionable items"),
        ("conveyor insights file flaky-test-3f2a9c1b2d", "file one as a requirement"),
    ),
)
insights_summary.register_into(insights_app)


def register(app: typer.Typer) -> None:
    app.add_typer(insights_app, name="insights")
