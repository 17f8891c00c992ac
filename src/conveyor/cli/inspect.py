"""`conveyor status`, `conveyor logs`, `conveyor history`: read back from the store."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.output import (
    OutputFormat,
    OutputOption,
    console,
    elapsed,
    emit_json,
    examples,
    styled,
)
from conveyor.cli.project import SpecOption
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.service.project import Project
    from conveyor.store.store import Store

RunArgument = typer.Argument(help="A run number (default: the latest run).")


def register(app: typer.Typer) -> None:
    app.command("status", epilog=STATUS_EXAMPLES)(status)
    app.command("logs", epilog=LOGS_EXAMPLES)(logs)
    app.command("history", epilog=HISTORY_EXAMPLES)(history)


STATUS_EXAMPLES = examples(
    ("conveyor status", "the latest run and its jobs"),
    ("conveyor status 12 -o json", "run 12, for a script"),
)
LOGS_EXAMPLES = examples(
    ("conveyor logs", "every job's log of the latest run"),
    ("conveyor logs unit-tests", "one job's log, of the latest run"),
    ("conveyor logs 12 unit-tests", "one job's log, of run 12"),
    ("conveyor logs 13 build -F", "follow a job while it runs"),
    ("conveyor logs --env production --level error --since 10m", "replicas' errors"),
    ("conveyor logs --env staging --release staging-shop-3f1c -F", "follow one release"),
    ("conveyor logs --env staging --grep timeout -o json", "matching lines, as JSON"),
)
HISTORY_EXAMPLES = examples(
    ("conveyor history -n 5", "the 5 newest runs"),
    ("conveyor history --branch main -o json", "runs of main, as JSON"),
)


def status(
    run_id: Annotated[int | None, RunArgument] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Show a run and the state of each of its jobs."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        view = remote_commands.run_view(remote, run_id)
    else:
        from conveyor.service.project import Project
        from conveyor.service.queries import run_view

        with Project.locate(spec).open_store(create=False) as store:
            view = run_view(store, run_id)
    if output is OutputFormat.JSON:
        emit_json({"run": view.run, "jobs": view.jobs})
        return
    run = view.run
    console.print(
        f"[bold]run {run.id}[/] {styled(run.state.value)} · {escape(run.pipeline)} · "
        f"{(run.commit_sha or '')[:12]} on {escape(run.branch or run.tag or '(detached)')} · "
        f"by {escape(run.actor or '?')} · {_when(run.started_at)} · "
        f"{elapsed(run.started_at, run.finished_at or time.time())}"
    )
    table = Table(box=None, pad_edge=False)
    for column in ("job", "state", "time", "tries", "detail"):
        table.add_column(column)
    for job in view.jobs:
        table.add_row(
            escape(job.job_id),
            styled(job.state.value),
            elapsed(job.started_at, job.finished_at),
            str(job.attempts or ""),
            escape(job.detail or job.reason or ""),
        )
    console.print(table)


def logs(
    run_or_job: Annotated[
        str | None,
        typer.Argument(
            metavar="RUN",
            help="A run number (default: the latest run); a job alone means the latest run's job.",
            show_default=False,
        ),
    ] = None,
    job: Annotated[
        str | None, typer.Argument(metavar="JOB", help="A job id or name (default: all).")
    ] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep printing while it runs.")
    ] = False,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
    env: Annotated[
        str | None,
        typer.Option("--env", help="An environment: its replicas' logs instead of a run's."),
    ] = None,
    release: Annotated[
        str | None, typer.Option("--release", help="With --env: one release (id or prefix).")
    ] = None,
    grep: Annotated[
        str | None, typer.Option("--grep", help="With --env: lines with this text (any case).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="With --env: lines since a duration ago (10m) or a time."),
    ] = None,
    level: Annotated[
        str | None,
        typer.Option("--level", help="With --env: this level or above (debug ... critical)."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=10000, help="With --env: newest N lines.")
    ] = 100,
) -> None:
    """Print the (masked) logs of a run's jobs: `logs`, `logs RUN`, `logs JOB`, `logs RUN JOB`;
    or, with `--env ENV`, what that environment's replicas wrote, per release."""
    from conveyor.cli import replica_logs, target

    env_options = replica_logs.env_only_options(release, grep, since, level)
    if env is None and env_options:
        raise ConveyorError(
            f"{', '.join(env_options)} filter an environment's logs: they need --env",
            hint="`conveyor logs --env ENV " + " ".join(env_options) + " ...`",
        )
    if env is not None:
        if run_or_job is not None or job is not None:
            raise ConveyorError(
                "--env shows an environment's replicas' logs, RUN and JOB a run's: not both",
                hint=f"`conveyor logs --env {env}`, or `conveyor logs RUN JOB` without --env",
            )
        args = replica_logs.EnvLogsArgs(
            env, release, grep, since, level, limit, follow, output, spec
        )
        replica_logs.env_logs(args)
        return
    run_id, job = _run_and_job(run_or_job, job)
    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        view = remote_commands.run_view(remote, run_id)
        jobs = [remote_commands.pick_job(view, job)] if job else view.jobs
        if follow and job:
            remote_commands.follow_log(remote, view.run.id, jobs[0].job_id)
            return
        collected = {j.job_id: remote_commands.job_log(remote, view.run.id, j.job_id) for j in jobs}
    else:
        from conveyor.service.project import Project
        from conveyor.service.queries import job_log, resolve_job, run_view

        project = Project.locate(spec)
        with project.open_store(create=False) as store:
            view = run_view(store, run_id)
            jobs = [resolve_job(store, view.run.id, job)] if job else view.jobs
            if follow and job:
                _follow(project, store, view.run.id, jobs[0].job_id)
                return
            collected = {j.job_id: job_log(project, store, view.run.id, j.job_id) for j in jobs}
    if output is OutputFormat.JSON:
        emit_json({"run": view.run.id, "jobs": collected})
        return
    for job_id, lines in collected.items():
        if len(collected) > 1:
            console.print(f"[bold]── {escape(job_id)}[/]")
        for line in lines:
            sys.stdout.write(line.text + "\n")


def _run_and_job(first: str | None, second: str | None) -> tuple[int | None, str | None]:
    """`[RUN] [JOB]`: a first word of digits is a run number, anything else a job of the
    latest run (a job named only with digits needs its run: `logs RUN JOB`)."""
    if first is None or first.isdecimal():
        return (None if first is None else int(first)), second
    if second is not None:
        raise ConveyorError(
            f"RUN must be a run number, not {first!r}",
            hint=f"`conveyor logs {second}` for the latest run, or `conveyor logs RUN {second}`",
        )
    return None, first


def _follow(project: Project, store: Store, run_id: int, job_id: str) -> None:
    from conveyor.service.queries import job_log

    shown = 0
    while True:
        lines = job_log(project, store, run_id, job_id)
        for line in lines[shown:]:
            sys.stdout.write(line.text + "\n")
        sys.stdout.flush()
        shown = len(lines)
        if store.get_job(run_id, job_id).state.finished:
            return
        time.sleep(0.5)


def history(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs.")] = 20,
    branch: Annotated[str | None, typer.Option("--branch", help="Only this branch.")] = None,
    spec: Annotated[Path | None, SpecOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """List recent runs, newest first."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        runs = remote_commands.runs(remote, limit, branch)
    else:
        from conveyor.service.project import Project

        with Project.locate(spec).open_store(create=False) as store:
            runs = store.list_runs(limit, branch=branch)
    if output is OutputFormat.JSON:
        emit_json(runs)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("run", "state", "commit", "branch", "started", "took", "actor", "message"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            str(run.id),
            styled(run.state.value),
            (run.commit_sha or "")[:12],
            escape(run.branch or run.tag or ""),
            _when(run.started_at),
            elapsed(run.started_at, run.finished_at),
            escape(run.actor or ""),
            escape((run.message or "").splitlines()[0] if run.message else ""),
        )
    console.print(table)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")
