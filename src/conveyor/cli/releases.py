"""`conveyor release status|promote|abort|pause|resume|record|explain`: steer a progressive
release, export the record of one, and say what the canary analysis can detect."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from conveyor.cli import release_notes
from conveyor.cli.environments import EnvArgument, opened
from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, examples
from conveyor.cli.project import SpecOption

if TYPE_CHECKING:
    from conveyor.service.releases import Explanation

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
        ("conveyor release notes production", "features, fixes, others, with linked ids"),
        ("conveyor release explain production", "what the judge can catch at its traffic"),
        ("conveyor release explain production --rate 20", "... and at 20 req/s"),
    ),
)
release_notes.register_into(release_app)  # `release notes`, in its own module


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
    if progress is not None and progress.guarantee:
        console.print(f"  promoted: {escape(progress.guarantee)}")
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


@release_app.command("explain")
def explain(
    environment: Annotated[str, EnvArgument],
    rate: Annotated[
        float | None,
        typer.Option(help="Requests per second to ask about (default: the recent traffic)."),
    ] = None,
    error_rate: Annotated[
        float | None,
        typer.Option(help="The old version's error rate, a fraction (default: the recent one)."),
    ] = None,
    runs: Annotated[int, typer.Option(min=1, max=200, help="Simulated canaries per figure.")] = 10,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """What the canary analysis can detect at the environment's traffic, and how soon:
    the judge itself, run on simulated canaries like that traffic (medians of --runs)."""
    from conveyor.service.releases import explain_release

    with opened(spec) as (project, store):
        found = explain_release(
            project, store, environment, rate=rate, error_rate=error_rate, runs=runs
        )
    if output is OutputFormat.JSON:
        emit_json(
            {
                "environment": found.environment,
                "source": found.source,
                "promote_when": found.settings.promote_when.model_dump(mode="json"),
                "hidden_rates": dict(
                    errors=found.settings.hidden_rates()[0], slow=found.settings.hidden_rates()[1]
                ),
                "beta": found.settings.beta,
                **found.capability.to_json(),
            }
        )
        return
    for line in explain_lines(found):
        console.print(line, highlight=False)


def explain_lines(found: Explanation) -> list[str]:
    """The explanation, line by line (rich markup, the names escaped)."""
    from conveyor.analysis.capability import HORIZON
    from conveyor.analysis.judge import describe_seconds

    cap, settings = found.capability, found.settings
    traffic, rule = cap.traffic, settings.promote_when
    errors_rate, _ = settings.hidden_rates()
    confidence = f"{1 - settings.beta:.0%}"
    horizon = describe_seconds(HORIZON)

    def when(seconds: float | None) -> str:
        return f"not within {horizon}" if seconds is None else describe_seconds(seconds)

    def ratio(value: float | None) -> str:
        return "unbounded" if value is None else f"{value:.2g}x"

    def share(value: float | None) -> str:
        return "unbounded" if value is None else f"{value * 100:.2g}%"

    lines = [
        f"{escape(found.environment)}: {traffic.rate:.3g} req/s, {traffic.error_rate:.3%} errors"
        f" ({escape(found.source)})",
        f"  canary at {traffic.canary_share:.0%} beside a {traffic.baseline_share:.0%} baseline;"
        f" {cap.runs} simulated canaries per figure, median (90th percentile)",
        f"  promotion: when a >={rule.max_hidden_error_ratio:g}x error regression (or errors"
        f" on >={errors_rate * 100:.3g}% of the canary's requests) and a"
        f" >={rule.max_hidden_slow_ratio:g}x slow-request regression would have been caught"
        f" with {confidence} probability",
        f"  a harmless release is promoted after {when(cap.promote_median)}"
        f" ({when(cap.promote_p90)}); {cap.promoted} of {cap.runs} within {horizon}",
        f"  the smallest regression caught with {confidence} probability, after:",
    ]
    for hidden in cap.hidden:
        lines.append(
            f"    {describe_seconds(hidden.seconds):>6}: errors {ratio(hidden.error_ratio)}"
            f" or on {share(hidden.error_rate)} of requests;"
            f" slow requests {ratio(hidden.slow_ratio)}"
        )
    if not cap.detections:
        lines.append("  the harm detector: no errors at this error rate, so no error ratio")
        return lines
    lines.append("  the harm detector rolls back (the judge watching on past a promotion):")
    for found_at in cap.detections:
        times = (
            f": after {when(found_at.median)} ({when(found_at.p90)})"
            if found_at.median is not None
            else ""
        )
        lines.append(
            f"    {found_at.effect:g}x errors: {found_at.caught} of {found_at.runs} rolled back"
            f" within {horizon}{times}"
        )
    return lines
