"""`conveyor plan` and `conveyor run`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json
from conveyor.cli.project import SpecOption
from conveyor.errors import ExitCode

JobOption = typer.Option("--job", "-j", help="Run only this job (and what it needs). Repeatable.")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("run")(run)


def plan(
    spec: Annotated[Path | None, SpecOption] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Say why each job is included, skipped or blocked.")
    ] = False,
    jobs: Annotated[list[str] | None, JobOption] = None,
    output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT,
) -> None:
    """Show the jobs a run of the current commit would execute, in order."""
    from conveyor.service.project import Project
    from conveyor.service.runs import RunOptions, prepare_plan

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
        bool, typer.Option("--quiet", "-q", help="State changes only, no logs.")
    ] = False,
) -> int:
    """Run the pipeline on the current commit. Exit 1 if a job failed, 130 if interrupted."""
    from conveyor.cli.live import ConsoleReporter
    from conveyor.service.project import Project
    from conveyor.service.runs import RunOptions, execute_run
    from conveyor.states import RunState

    options = RunOptions(
        spec=spec,
        parallelism=parallelism,
        allow_dirty=allow_dirty,
        rerun_failed=rerun_failed,
        only=tuple(jobs or ()),
        use_cache=not no_cache,
    )
    outcome = execute_run(
        Project.locate(spec), options, ConsoleReporter(console, show_logs=not quiet)
    )
    if outcome.state is not RunState.SUCCESS:
        failed = [
            job
            for job, state in outcome.jobs.items()
            if not (state.succeeded or state.value == "skipped")
        ]
        console.print(
            f"[dim]see the logs: conveyor logs {outcome.run_id} "
            f"{escape(failed[0]) if failed else ''}[/]"
        )
        return int(ExitCode.PIPELINE_FAILED)
    return int(ExitCode.OK)
