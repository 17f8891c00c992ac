"""`conveyor release status|promote|abort|pause|resume|record`: steer a progressive release,
and export the record of one."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from conveyor.cli.environments import EnvArgument, opened
from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.cli.project import SpecOption

release_app = typer.Typer(
    help="A progressive release in progress: status and commands.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor release status production", "step, weights, the judge's verdicts"),
        ("conveyor release pause production", "hold at this step (harm still rolls back)"),
        ("conveyor release promote production -o json", "go on now; the deploy id, for a script"),
        ("conveyor release abort production", "all traffic back to the stable version"),
        ("conveyor release record production --format json", "the record of the release"),
        ("conveyor release record production --deploy 42", "the record of one deploy"),
    ),
)


def register(app: typer.Typer) -> None:
    app.add_typer(release_app, name="release")


@release_app.command("status")
def status(
    environment: Annotated[str, EnvArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """The release in progress (else the latest): step, weights, the judge's verdicts."""
    from conveyor.service.releases import release_status

    with opened(spec) as (project, store):
        found = release_status(project, store, environment)
    if output is OutputFormat.JSON:
        emit_json(found)
        return
    if found.deploy is None:
        console.print(f"{escape(environment)}: no release yet")
        return
    deploy, progress = found.deploy, found.progress
    state = "in progress" if found.in_progress else deploy.state.value
    console.print(f"[bold]{escape(deploy.release_id)}[/] ({state}) by {escape(deploy.actor)}")
    if progress is not None:
        step = progress.step
        paused = " [yellow]paused[/]" if progress.paused else ""
        # Promoted or rolled back; "started" (canary and baseline ready) says nothing more.
        done = progress.phase
        phase = f", {done.value}" if done is not None and done.value != "started" else ""
        console.print(
            f"  {progress.strategy} step {step if step is None else step + 1}/{progress.steps},"
            f" canary weight {progress.weight}%{phase}{paused}"
        )
    for hook in found.hooks:
        console.print(f"  {escape(_describe_hook(hook))}")
    for decision in found.decisions:
        when = datetime.fromtimestamp(float(decision["ts"])).strftime("%H:%M:%S")
        evidence = json.dumps(decision.get("evidence", {}), default=str)[:160]
        console.print(
            f"  {when} {decision['verdict']}: {escape(str(decision['reason']))}"
            f" [dim]{escape(evidence)}[/]"
        )
    if deploy.reason:
        console.print(f"  result: {escape(deploy.reason)}")


def _describe_hook(hook: dict[str, Any]) -> str:
    """`hook before_traffic migrate: succeeded (exit 0, 1.2 s)`."""
    result = str(hook.get("result"))
    details = []
    if hook.get("exit_code") is not None:
        details.append(f"exit {hook['exit_code']}")
    if hook.get("seconds") is not None:
        details.append(f"{float(hook['seconds']):.1f} s")
    if result != "succeeded" and hook.get("on_failure") == "continue":
        details.append("on_failure: continue")
    suffix = f" ({', '.join(details)})" if details else ""
    return f"hook {hook.get('phase')} {hook.get('hook')}: {result}{suffix}"


def _command(environment: str, command: str, spec: Path | None, output: OutputFormat) -> None:
    from conveyor.service.releases import send_command
    from conveyor.service.runs import default_actor

    with opened(spec) as (project, store):
        deploy_id = send_command(project, store, environment, command, default_actor())
    if output is OutputFormat.JSON:
        emit_json({"environment": environment, "command": command, "deploy_id": deploy_id})
        return
    console.print(f"{escape(environment)}: {command} sent to deploy {deploy_id}")


@release_app.command("promote")
def promote(
    environment: Annotated[str, EnvArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """End the current pause or analysis step now and go on to the next."""
    _command(environment, "promote", spec, output)


@release_app.command("abort")
def abort(
    environment: Annotated[str, EnvArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Roll the release back: all traffic to the stable version at once."""
    _command(environment, "abort", spec, output)


@release_app.command("pause")
def pause(
    environment: Annotated[str, EnvArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Hold at the current step; the judge still rolls back on evidence of harm."""
    _command(environment, "pause", spec, output)


@release_app.command("resume")
def resume(
    environment: Annotated[str, EnvArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Go on after a pause."""
    _command(environment, "resume", spec, output)


class RecordFormat(StrEnum):
    MARKDOWN = "markdown"
    JSON = "json"


@release_app.command("record")
def record(
    environment: Annotated[str, EnvArgument],
    release: Annotated[
        str | None, typer.Argument(help="A release id (default: the latest successful one).")
    ] = None,
    deploy: Annotated[
        int | None,
        typer.Option(
            "--deploy",
            min=1,
            help="A deploy id (`conveyor env history`): a release deployed again after a "
            "rollback has a record per deploy. Default: the release's latest.",
        ),
    ] = None,
    form: Annotated[
        RecordFormat, typer.Option("--format", help="markdown or json.")
    ] = RecordFormat.MARKDOWN,
    to_file: Annotated[
        Path | None, typer.Option("--output", help="Write it to this file instead of stdout.")
    ] = None,
    spec: Annotated[Path | None, SpecOption] = None,
) -> None:
    """The record of one deploy: the release it replaced, commits, gates, tests, findings,
    scan, staging tests, the approval it was made under, provenance and the audit head, as
    Markdown or JSON."""
    from conveyor.service.release_record import release_record, to_markdown

    with opened(spec) as (project, store):
        found = release_record(project, store, environment, release, deploy)
    text = (
        json.dumps(found, indent=2, default=str) + "\n"
        if form is RecordFormat.JSON
        else to_markdown(found)
    )
    if to_file is None:
        sys.stdout.write(text)
        return
    partial = to_file.with_name(to_file.name + ".partial")
    partial.write_text(text)
    partial.replace(to_file)  # never a half-written record
    console.print(f"release record of {escape(found['release']['id'])} written to {to_file}")
