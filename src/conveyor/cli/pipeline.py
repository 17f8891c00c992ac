"""`conveyor plan` and `conveyor run`.

The run path is imported at module level: this module is loaded only for these two
commands (and for the full help), and `main` freezes what is imported before the command
starts (conveyor.cli.app).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.live import LiveReporter, reporter_for
from conveyor.cli.output import (
    OutputFormat,
    OutputOption,
    console,
    emit_json,
    err_console,
    examples,
    verbosity,
)
from conveyor.cli.project import SpecOption
from conveyor.errors import ConveyorError, ExitCode
from conveyor.service.project import Project
from conveyor.service.runs import RunOptions, execute_run, prepare_plan
from conveyor.states import RunState

JobOption = typer.Option("--job", "-j", help="Run only this job (and what it needs). Repeatable.")


def register(app: typer.Typer) -> None:
    app.command("plan", epilog=PLAN_EXAMPLES)(plan)
    app.command("run", epilog=RUN_EXAMPLES)(run)


PLAN_EXAMPLES = examples(
    ("conveyor plan --explain", "each job: included, skipped or blocked, and why"),
    ("conveyor plan -j integration-tests -o json", "one job and what it needs, as JSON"),
)
RUN_EXAMPLES = examples(
    ("conveyor run", "the pipeline on HEAD; live on a terminal"),
    ("conveyor run -q", "one line per job when it ends"),
    ("conveyor run -j unit-tests -p 2", "one job (and what it needs), two at a time"),
    ("conveyor run --rerun-failed 12", "only what failed in run 12, and its dependants"),
    ("conveyor run -o json > result.json", "the result as JSON; progress on stderr"),
)


def plan(
    spec: Annotated[Path | None, SpecOption] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Say why each job is included, skipped or blocked.")
    ] = False,
    jobs: Annotated[list[str] | None, JobOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Show the jobs a run of the current commit would execute, in order."""
    project = Project.locate(spec)
    with project.open_store() as store:
        _, git, planned = prepare_plan(project, store, RunOptions(only=tuple(jobs or ())))
    if output is OutputFormat.JSON:
        emit_json(
            {
                "pipeline": planned.pipeline,
                "commit": git.sha,
                "branch": git.branch,
                "tag": git.tag,
                "changed_files": git.changed_files,
                "jobs": [
                    {
                        "id": j.id,
                        "name": j.name,
                        "status": j.status.value,
                        "reason": j.reason,
                        "needs": list(j.needs),
                        "matrix": j.matrix,
                        "step": j.step,
                    }
                    for j in planned.jobs
                ],
            }
        )
        return
    console.print(
        f"pipeline [bold]{escape(planned.pipeline)}[/] at {git.sha[:12]} "
        f"on {escape(git.branch or git.tag or '(detached)')}"
    )
    table = Table(box=None, pad_edge=False)
    for column in ("#", "job", "status", "needs") + (("why",) if explain else ()):
        table.add_column(column)
    for index, job in enumerate(planned.jobs, 1):
        row = [str(index), escape(job.id), job.status.value, escape(", ".join(job.needs))]
        table.add_row(*row, *([escape(job.reason)] if explain else []))
    console.print(table)


def run(
    spec: Annotated[Path | None, SpecOption] = None,
    parallelism: Annotated[
        int | None, typer.Option("--parallelism", "-p", min=1, help="Jobs at once (default: CPUs).")
    ] = None,
    allow_dirty: Annotated[
        bool, typer.Option("--allow-dirty", help="Run on a working tree with uncommitted changes.")
    ] = False,
    rerun_failed: Annotated[
        int | None,
        typer.Option(
            "--rerun-failed",
            metavar="RUN",
            help="Rerun only the failed jobs of RUN and their dependants.",
        ),
    ] = None,
    jobs: Annotated[list[str] | None, JobOption] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore the job cache.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="One line per job when it ends; no logs.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Every log line, never a live display.")
    ] = False,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
    commit: Annotated[
        str | None, typer.Option("--commit", help="With --server: run this commit.")
    ] = None,
    branch: Annotated[
        str | None, typer.Option("--branch", help="With --server: run this branch's head.")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="With --server: start the run, do not follow it.")
    ] = False,
) -> int:
    """Run the pipeline on the current commit. Exit 1 if a job failed, 130 if interrupted.

    On a terminal the running jobs are shown live, each with its latest log line; in a pipe
    or a log file each state change and log line is a line of its own. With -o json the
    progress goes to standard error and the result to standard output.

    With --server (before the command) the server runs it: --commit or --branch (default:
    the server's choice), followed live until it ends unless --detach."""
    from conveyor.cli import target

    remote = target.client()
    if remote is not None:
        from conveyor.cli import remote_commands

        local: dict[str, bool] = {
            "--parallelism": parallelism is not None,
            "--allow-dirty": allow_dirty,
            "--job": bool(jobs),
            "--no-cache": no_cache,
        }
        for option, given in local.items():
            if given:
                raise remote_commands.local_only(option)
        return remote_commands.run(
            remote,
            commit=commit,
            branch=branch,
            rerun_failed=rerun_failed,
            detach=detach,
            quiet=quiet,
            output=output,
        )
    asked = {"--commit": commit is not None, "--branch": branch is not None, "--detach": detach}
    for option, given in asked.items():
        if given:
            raise ConveyorError(
                f"{option} goes with a server: `conveyor --server URL run {option} ...`",
                hint="locally, `conveyor run` runs the checkout's commit",
            )
    options = RunOptions(
        spec=spec,
        parallelism=parallelism,
        allow_dirty=allow_dirty,
        rerun_failed=rerun_failed,
        only=tuple(jobs or ()),
        use_cache=not no_cache,
    )
    shown = console if output is OutputFormat.TEXT else err_console
    reporter = reporter_for(shown, verbosity(quiet, verbose))
    try:
        outcome = execute_run(Project.locate(spec), options, reporter)
    finally:
        if isinstance(reporter, LiveReporter):
            reporter.stop()
    failed = [
        job
        for job, state in outcome.jobs.items()
        if not (state.succeeded or state.value == "skipped")
    ]
    if output is OutputFormat.JSON:
        emit_json(
            {
                "run": outcome.run_id,
                "state": outcome.state.value,
                "jobs": {job: state.value for job, state in outcome.jobs.items()},
                "failed": failed,
            }
        )
    elif outcome.state is not RunState.SUCCESS:
        console.print(
            f"[dim]see the logs: conveyor logs {outcome.run_id} "
            f"{escape(failed[0]) if failed else ''}[/]"
        )
    if outcome.state is not RunState.SUCCESS:
        return int(ExitCode.PIPELINE_FAILED)
    return int(ExitCode.OK)
