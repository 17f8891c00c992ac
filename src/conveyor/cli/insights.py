"""`conveyor insights ...`: what production teaches. `insights dora`: the DORA metrics of
an environment, exactly from the event log (docs/insights.md#dora-metrics)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.cli import insights_summary
from conveyor.cli.environments import opened
from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.cli.project import SpecOption

if TYPE_CHECKING:
    from conveyor.observe.dora import DoraReport

insights_app = typer.Typer(
    help="What production teaches: delivery metrics, insights, and the requirements filed.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor insights dora", "the production environment's DORA metrics, 90 days"),
        ("conveyor insights dora --env staging --since 30d", "another environment and period"),
        ("conveyor insights dora -o json", "every figure, deployment and week, for a script"),
        ("conveyor insights summary --since 30d", "the period's actionable items"),
        ("conveyor insights file flaky-test-3f2a9c1b2d", "file one as a requirement"),
    ),
)
insights_summary.register_into(insights_app)  # summary, file

TREND_WEEKS = 12  # weeks the text output lists; JSON has them all


def register(app: typer.Typer) -> None:
    app.add_typer(insights_app, name="insights")


@insights_app.command("dora")
def dora(
    env: Annotated[
        str | None,
        typer.Option("--env", help="The environment (default: production's, by after/approval)."),
    ] = None,
    since: Annotated[
        str, typer.Option("--since", help="The period back from now, e.g. 90d or 720h.")
    ] = "90d",
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Deployment frequency, lead time, change failure rate, recovery time, rework, and
    the regressions the canary stopped: per week, with the DORA performance band."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:  # the server's answer, printed as a local report is
        from conveyor.cli.remote import path_of
        from conveyor.observe.dora import DoraReport

        params = {"env": env, "since": since}
        report = remote.get_as(DoraReport, path_of("insights", "dora"), params)
    else:
        from conveyor.observe.dora import project_dora

        with opened(spec) as (project, store):
            report = project_dora(project, store, env, since)
    if output is OutputFormat.JSON:
        emit_json(report)
        return
    print_report(report)


def print_report(report: DoraReport) -> None:
    from conveyor.observe.dora_figures import describe_duration, describe_percent, describe_spread

    bands = report.bands
    console.print(
        f"[bold]{escape(report.environment)}[/]: DORA over {report.days:g} days"
        f" (since {_date(report.since)}), band [bold]{bands.overall.value}[/]"
    )
    rows = [
        (
            "deployment frequency",
            f"{report.deployments} deployments, {report.per_day:.2f}/day,"
            f" {report.per_week:.1f}/week",
            bands.deployment_frequency.value,
        ),
        (
            "lead time for changes",
            describe_spread(report.lead_time)
            + (
                f", {report.without_commit_time} without a commit time"
                if report.without_commit_time
                else ""
            ),
            _band(bands.lead_time),
        ),
        (
            "change failure rate",
            f"{describe_percent(report.change_failure_rate)}"
            f" ({report.failed_deployments} of {report.deployments})",
            _band(bands.change_failure_rate),
        ),
        (
            "failed deployment recovery",
            describe_spread(report.recovery_time)
            + (f", {report.unrestored} not restored" if report.unrestored else ""),
            _band(bands.recovery_time),
        ),
        (
            "deployment rework rate",
            f"{describe_percent(report.rework_rate)}"
            f" ({report.rework_deployments} of {report.deployments})",
            "",
        ),
        ("time to detect", describe_spread(report.time_to_detect), ""),
        (
            "stopped by the canary",
            f"{report.canary_stops} before full traffic,"
            f" detected in {describe_spread(report.canary_time_to_detect)}",
            "",
        ),
    ]
    for name, value, band in rows:
        suffix = f"  [dim]{band}[/]" if band else ""
        console.print(f"  {name:<28} {escape(value)}{suffix}")
    console.print("  [dim]week        deploys  failed  CFR     lead (median)  canary stops[/]")
    for week in report.weeks[-TREND_WEEKS:]:
        lead = describe_duration(week.lead_time_median)
        console.print(
            f"  {week.week}  {week.deployments:>7}  {week.failed:>6}"
            f"  {describe_percent(week.change_failure_rate):<6}  {lead:<13}  {week.canary_stops:>5}"
        )


def _band(band: object) -> str:
    return getattr(band, "value", "") or ""


def _date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()
