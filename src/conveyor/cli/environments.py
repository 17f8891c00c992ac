"""`conveyor deploy`, `conveyor rollback`, `conveyor env ...`: environments and releases."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.output import (
    OutputFormat,
    OutputOption,
    QuietOption,
    VerboseOption,
    console,
    emit_json,
    emit_json_line,
    examples,
    progress,
    verbosity,
)
from conveyor.cli.project import SpecOption
from conveyor.errors import ConveyorError, ExitCode

if TYPE_CHECKING:
    from conveyor.deploy.model import SignalRates
    from conveyor.deploy.rollout import DeployOutcome
    from conveyor.service.environments import EnvironmentView
    from conveyor.service.project import Project
    from conveyor.service.watch import WatchLine
    from conveyor.store.store import Store

env_app = typer.Typer(
    help="Environments: releases, traffic, health, golden signals, history.",
    no_args_is_help=True,
    epilog=examples(
        ("conveyor env ls", "environments, URLs, live and warm releases"),
        ("conveyor env status production -o json", "weights, replicas, golden signals"),
        ("conveyor env history staging", "deploys and rollbacks: who, what, when"),
        ("conveyor env watch production -n 10", "sample the golden signals 10 times"),
        ("conveyor env reconcile staging", "finish an interrupted deploy, restart what died"),
        ("conveyor env stop staging -o json", "stop the router and every release"),
    ),
)
DEPLOY_EXAMPLES = examples(
    ("conveyor deploy staging shop:1a2b3c4d", "by tag; live progress on a terminal"),
    ("conveyor deploy production shop@sha256:3738ca... -v", "every step: weights, verdicts"),
    ("conveyor deploy staging shop:v2 -q -o json", "no progress; the outcome as JSON"),
)
ROLLBACK_EXAMPLES = examples(
    ("conveyor rollback production", "all traffic back to the warm release"),
    ("conveyor rollback staging --to staging-shop-6f3150c2b8d1", "to a release that was live"),
)
EnvArgument = typer.Argument(help="The environment's name in conveyor.yml, e.g. staging.")


def register(app: typer.Typer) -> None:
    app.command("deploy", epilog=DEPLOY_EXAMPLES)(deploy)
    app.command("rollback", epilog=ROLLBACK_EXAMPLES)(rollback)
    app.add_typer(env_app, name="env")


@contextmanager
def opened(spec: Path | None) -> Iterator[tuple[Project, Store]]:
    from conveyor.service.project import Project

    project = Project.locate(spec)
    if not project.spec_path.is_file() and not project.has_state():
        # Nothing to act on: fail before the store would create the state folder.
        raise ConveyorError(
            f"no conveyor.yml at {project.spec_path}",
            hint="run it in the project's folder, or name the file with -f",
        )
    with project.open_store() as store:
        yield project, store


def _print_table(table: Table) -> None:
    """Release ids are copied into `rollback --to`: never wrap or cut them, even in a pipe."""
    from rich.console import Console

    if console.is_terminal:
        console.print(table)
        return
    for column in table.columns:
        column.no_wrap = True
    Console(highlight=False, width=240).print(table)


def deploy(
    environment: Annotated[str, EnvArgument],
    image: Annotated[str, typer.Argument(help="shop@sha256:<digest> (or shop:<tag>).")],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
    quiet: Annotated[bool, QuietOption] = False,
    verbose: Annotated[bool, VerboseOption] = False,
) -> None:
    """Deploy an image to an environment (admission, promotion order, its strategy, smoke).

    Without a strategy traffic moves replica by replica as each is ready; canary, blue_green,
    rolling and ab follow conveyor.yml. A failed smoke test or judge rolls back.

    Progress goes to standard error: on a terminal one live line with the traffic weights
    and the current step (a canary's judge verdicts stay printed), else a line per step.

    Environment: CONVEYOR_ACTOR (who deployed, for the history and audit log);
    CONVEYOR_REPLICA_LOG_MAX_BYTES and CONVEYOR_REPLICA_LOG_KEEP (when a replica's log
    rotates, default 10 MiB, and how many older logs are kept, default 3)."""
    from conveyor.service import environments
    from conveyor.service.runs import default_actor

    level = verbosity(quiet, verbose)
    with opened(spec) as (project, store), progress(level, f"deploying to {environment}") as say:
        outcome = environments.deploy(
            project, store, environment, image, actor=default_actor(), progress=say
        )
    _report_deploy(outcome, output)


def _report_deploy(outcome: DeployOutcome, output: OutputFormat) -> None:
    from conveyor.states import DeployState

    if output is OutputFormat.JSON:
        emit_json(outcome)
    else:
        for result in outcome.smoke:
            mark = "[green]✓[/]" if result.passed else "[bold red]✗[/]"
            detail = f": {escape(result.detail)}" if result.detail else ""
            console.print(f"{mark} smoke {escape(result.title)}{detail}")
        state = outcome.state.value
        style = "green" if outcome.state is DeployState.SUCCEEDED else "bold red"
        reason = f" ({escape(outcome.reason)})" if outcome.reason else ""
        console.print(f"{escape(outcome.release_id)}: [{style}]{state}[/]{reason}")
        console.print(f"serving at {outcome.url}")
    _exit_unless_succeeded(outcome)


def _exit_unless_succeeded(outcome: DeployOutcome) -> None:
    from conveyor.states import DeployState

    if outcome.state is not DeployState.SUCCEEDED:
        raise typer.Exit(int(ExitCode.PIPELINE_FAILED))


def rollback(
    environment: Annotated[str, EnvArgument],
    to: Annotated[
        str | None, typer.Option("--to", help="A release id (default: the warm previous one).")
    ] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
    quiet: Annotated[bool, QuietOption] = False,
    verbose: Annotated[bool, VerboseOption] = False,
) -> None:
    """Send all traffic back to the previous release (kept warm) at once."""
    from conveyor.service import environments
    from conveyor.service.runs import default_actor

    level = verbosity(quiet, verbose)
    with opened(spec) as (project, store), progress(level, f"rolling {environment} back") as say:
        outcome = environments.rollback(
            project, store, environment, actor=default_actor(), to=to, progress=say
        )
    if output is OutputFormat.JSON:
        emit_json(outcome)
        return
    console.print(
        f"{escape(environment)}: all traffic on {escape(outcome.to_release)} "
        f"after {outcome.switch_seconds:.3f} s (was {escape(str(outcome.from_release))})"
    )


@env_app.command("ls")
def env_ls(
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """List the environments of conveyor.yml with their URL and live release."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        views = remote_commands.environments(remote)
    else:
        from conveyor.service import environments
        from conveyor.service.project import Project

        project = Project.locate(spec)
        # conveyor.yml read first: in a folder without one, fail before creating the state
        # folder.
        environments.environments_of(project)
        with project.open_store() as store:
            views = environments.list_environments(project, store)
    if output is OutputFormat.JSON:
        emit_json(views)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("environment", "url", "live", "warm", "runtime", "router", "deploying"):
        table.add_column(column)
    stopped = " [yellow](stopped)[/]"
    for view in views:
        table.add_row(
            view.name,
            view.url or "-",
            (escape(view.live_release) + (stopped if view.stopped else ""))
            if view.live_release
            else "-",
            (escape(view.warm_release) + (stopped if view.stopped else ""))
            if view.warm_release
            else "-",
            view.runtime,
            view.router,
            view.deploying.release_id if view.deploying else "",
        )
    _print_table(table)


@env_app.command("status")
def env_status(
    environment: Annotated[str, EnvArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Live: releases, weights, replica health and golden signals (over about 1 s)."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        view = remote_commands.environment(remote, environment)
    else:
        from conveyor.service import environments

        with opened(spec) as (project, store):
            view = environments.environment_status(project, store, environment)
    if output is OutputFormat.JSON:
        emit_json(view)
        return
    _print_status(view)


def _print_status(view: EnvironmentView) -> None:
    console.print(f"[bold]{view.name}[/] {view.url}  runtime {view.runtime}, router {view.router}")
    if view.stopped:
        console.print(
            f"[yellow]stopped[/]: `conveyor env reconcile {escape(view.name)}` starts its "
            "router and releases again"
        )
    if view.deploying is not None:
        console.print(f"[yellow]deploying {escape(view.deploying.release_id)}[/]")
    table = Table(box=None, pad_edge=False)
    for column in ("release", "state", "weight", "replicas", "req/s", "5xx", "4xx", "p50", "p99"):
        table.add_column(column)
    table.add_column("cpu/mem/files")
    for release in view.releases:
        ready = sum(1 for r in release.replicas if r.state.value == "ready")
        restarts = sum(r.restarts for r in release.replicas)
        rates = release.rates
        table.add_row(
            escape(release.release_id),
            release.state.value,
            f"{release.weight}%",
            f"{ready}/{len(release.replicas)} ready"
            + (f", {restarts} restarts" if restarts else ""),
            f"{rates.requests_per_second:.1f}" if rates else "-",
            f"{rates.rate_5xx:.1%}" if rates else "-",
            f"{rates.rate_4xx:.1%}" if rates else "-",
            _ms(rates.p50 if rates else None),
            _ms(rates.p99 if rates else None),
            _saturation(rates),
        )
    _print_table(table)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _saturation(rates: SignalRates | None) -> str:
    if rates is None or rates.memory_bytes is None:
        return "-"
    cpu = f"{rates.cpu_percent:.0f}%" if rates.cpu_percent is not None else "-"
    return f"{cpu} / {rates.memory_bytes / 1e6:.0f} MB / {rates.open_files}"


@env_app.command("history")
def env_history(
    environment: Annotated[str, EnvArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Deploys and rollbacks of an environment (who, what, when, result), from the event log."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        entries = remote_commands.environment_history(remote, environment)
    else:
        from conveyor.service import environments

        with opened(spec) as (project, store):
            entries = environments.history(project, store, environment)
    if output is OutputFormat.JSON:
        emit_json(entries)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("when", "what", "deploy", "release", "digest", "who", "result", "reason"):
        table.add_column(column)
    for entry in entries:
        table.add_row(
            datetime.fromtimestamp(entry.started_at).strftime("%Y-%m-%d %H:%M:%S"),
            entry.kind,
            str(entry.deploy_id) if entry.deploy_id is not None else "-",
            escape(entry.release_id),
            (entry.digest or "")[:19],
            escape(entry.actor or ""),
            entry.result,
            escape(entry.reason or ""),
        )
    _print_table(table)


@env_app.command("metrics")
def env_metrics(
    environment: Annotated[str, EnvArgument],
    spec: Annotated[Path | None, SpecOption] = None,
) -> None:
    """The golden signals of every release in the Prometheus text format."""
    from conveyor.service import environments

    with opened(spec) as (project, store):
        text = environments.metrics(project, store, environment)
    sys.stdout.write(text.decode())


@env_app.command("watch")
def env_watch(
    environment: Annotated[str, EnvArgument],
    interval: Annotated[
        float, typer.Option("--interval", "-i", min=0.2, help="Seconds between samples.")
    ] = 1.0,
    count: Annotated[
        int, typer.Option("--count", "-n", min=0, help="Stop after N samples (0: never).")
    ] = 0,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Watch an environment's releases: the current ones, then only changes (Ctrl-C stops).

    A line per current release (with traffic, or running) after the first sample, then a
    line only when a release appears, goes, or changes state, weight, ready replicas, or
    golden signals beyond one window's noise. Every sample is kept in the store: the time
    series release analysis reads. With -o json, one JSON object per line (JSON Lines):
    ts, change (current, added, changed, gone), release, state, weight, replicas, rates."""
    from conveyor.service.watch import watch

    with opened(spec) as (project, store):
        for index, lines in enumerate(watch(project, store, environment, interval)):
            for line in lines:
                _print_watch_line(line, output)
            if count and index + 1 >= count:
                return


def _print_watch_line(line: WatchLine, output: OutputFormat) -> None:
    row = line.row
    if output is OutputFormat.JSON:
        replicas = {"ready": row.ready, "total": row.replicas, "restarts": row.restarts}
        emit_json_line(
            {
                "ts": time.time(),
                "change": line.change.value,
                "release": row.release_id,
                "state": row.state.value if row.state else None,
                "weight": row.weight,
                "replicas": replicas,
                "rates": row.rates,
            }
        )
        return
    when = datetime.now().strftime("%H:%M:%S")
    state = row.state.value if row.state else "?"
    if line.change.value == "gone":
        console.print(f"{when} {escape(row.release_id)}  gone (was {state})")
        return
    rates = row.rates
    signals = (
        f"{rates.requests_per_second:7.1f} req/s  5xx {rates.rate_5xx:6.1%}  "
        f"4xx {rates.rate_4xx:6.1%}  p50 {_ms(rates.p50)}  p99 {_ms(rates.p99)}  "
        f"cpu {_saturation(rates)}"
        if rates
        else "no window yet"
    )
    restarts = f", {row.restarts} restarts" if row.restarts else ""
    console.print(
        f"{when} {escape(row.release_id)}  {state} {row.weight}%  "
        f"{row.ready}/{row.replicas} ready{restarts}  {signals}"
    )


@env_app.command("reconcile")
def env_reconcile(
    environment: Annotated[str, EnvArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
    quiet: Annotated[bool, QuietOption] = False,
    verbose: Annotated[bool, VerboseOption] = False,
) -> None:
    """Bring an environment back to its recorded desired state; starts nothing twice.

    Finishes an interrupted deploy, restarts a stopped router or release."""
    from conveyor.service import environments

    level = verbosity(quiet, verbose)
    with (
        opened(spec) as (project, store),
        progress(level, f"reconciling {environment}") as say,
    ):
        outcome = environments.reconcile(project, store, environment, progress=say)
    if output is OutputFormat.JSON:
        emit_json({"environment": environment, "as_recorded": outcome is None, "deploy": outcome})
        if outcome is not None:
            _exit_unless_succeeded(outcome)
        return
    if outcome is None:
        console.print(f"{escape(environment)}: as recorded")
        return
    _report_deploy(outcome, OutputFormat.TEXT)


@env_app.command("stop")
def env_stop(
    environment: Annotated[str, EnvArgument],
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Stop an environment's router and releases (history stays in the store)."""
    from conveyor.service import environments
    from conveyor.service.runs import default_actor

    with opened(spec) as (project, store):
        stopped = environments.stop_environment(project, store, environment, default_actor())
    if output is OutputFormat.JSON:
        emit_json({"environment": environment, "stopped": stopped})
        return
    console.print(f"{escape(environment)}: stopped {len(stopped)} release(s) and the router")
