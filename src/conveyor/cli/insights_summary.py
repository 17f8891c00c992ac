"""`conveyor insights summary [--since 30d]` and `conveyor insights file ITEM_ID`: a
period's summary with its actionable items, and one item filed as a requirement (on the
forge, or as docs/requirements/REQ-N.md; `--commit` commits that file)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.cli.environments import opened
from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json
from conveyor.cli.project import SpecOption

if TYPE_CHECKING:
    from conveyor.observe.insights import InsightsSummary

SinceOption = typer.Option("--since", help="The period: 30d, 12h, 90m (default 30d).")
ItemArgument = typer.Argument(help="An item's id from `conveyor insights summary`.")
CommitOption = typer.Option(
    "--commit", help="Commit the requirement's Markdown file (when no forge is configured)."
)


def _period(since: str) -> float:
    from conveyor.errors import ConveyorError
    from conveyor.spec.durations import parse_duration

    try:
        return parse_duration(since)
    except ValueError as error:
        raise ConveyorError(f"--since: {error}", hint="for example --since 30d") from None


def summary(
    since: Annotated[str, SinceOption] = "30d",
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """The period's DORA trends, incidents, regressions caught, flaky tests, slowest
    stages, fixable vulnerabilities and expiring waivers; each item with its id."""
    from conveyor.observe.insights import summary as summarise

    period = _period(since)
    with opened(spec) as (project, store):
        found = summarise(project, store, period=period)
    if output is OutputFormat.JSON:
        emit_json(found)
        return
    _print_summary(found)


def file(
    item: Annotated[str, ItemArgument],
    since: Annotated[str, SinceOption] = "30d",
    commit: Annotated[bool, CommitOption] = False,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """File one item as a requirement (the one already filed, if it was)."""
    from conveyor.observe.insights import file_item
    from conveyor.observe.requirements import commit_requirement_file
    from conveyor.service.runs import default_actor

    period = _period(since)
    committed = None
    with opened(spec) as (project, store):
        found, filed = file_item(project, store, item, actor=default_actor(), period=period)
        on_disk = not filed.location.startswith(("http://", "https://"))
        if commit and on_disk and (project.directory / filed.location).exists():
            committed = commit_requirement_file(project, filed)
    if output is OutputFormat.JSON:
        emit_json({"item": found.id, "requirement": filed, "committed": committed})
        return
    where = escape(filed.location)
    console.print(f"{escape(found.id)} filed as [bold]{escape(filed.key)}[/]: {where}")
    if committed:
        console.print(f"  committed as {committed[:12]}")
    elif on_disk:
        console.print(
            f"  commit it: git add {escape(filed.location)} && git commit -m "
            f"'docs: file {escape(filed.key)}' (or run this again with --commit)"
        )
    console.print(f"  a commit that says `Refs {escape(filed.key)}` marks it addressed")


def register_into(group: typer.Typer) -> None:
    group.command("summary")(summary)
    group.command("file")(file)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _print_summary(found: InsightsSummary) -> None:
    console.print(f"[bold]Insights[/] {_when(found.since)} to {_when(found.until)} UTC")
    dora = found.dora
    if dora.get("available"):
        console.print(
            f"  DORA ({escape(str(dora.get('environment')))}): {dora.get('deployments')} "
            f"deployments, change failure rate {dora.get('change_failure_rate')}, "
            f"overall {escape(str((dora.get('bands') or {}).get('overall')))}"
        )
    else:
        console.print(f"  DORA: {escape(str(dora.get('reason')))}")
    counts = [
        (len(found.incidents), "incidents"),
        (len(found.regressions), "regressions caught by the canary"),
        (len(found.flaky_tests), "flaky tests or jobs"),
        (len(found.vulnerabilities), "vulnerabilities with a fix"),
        (len(found.expiring_waivers), "waivers expiring"),
    ]
    console.print("  " + ", ".join(f"{count} {what}" for count, what in counts))
    for stage in found.slowest_stages:
        console.print(
            f"  slow: {escape(stage['job'])} median {stage['median_seconds']:.1f} s "
            f"over {stage['runs']} run(s)"
        )
    if not found.items:
        console.print("  nothing to file")
    for item in found.items:
        filed = ""
        if item.requirement is not None:
            filed = f" [{item.state.value} {escape(str(item.requirement['key']))}"
            addressed = item.requirement.get("addressed_by")
            filed += f" by {str(addressed)[:12]}]" if addressed else "]"
        console.print(f"  [bold]{escape(item.id)}[/] {escape(item.title)}{filed}")
