"""The live view of a run on the terminal: state changes and prefixed, masked log lines."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape

from conveyor.cli.output import styled
from conveyor.engine.executors.base import Stream
from conveyor.engine.plan import Plan, PlanStatus
from conveyor.states import JobState, RunState

_MARK = {
    JobState.SUCCESS: "[green]✓[/]",
    JobState.CACHED: "[cyan]↺[/]",
    JobState.FAILED: "[bold red]✗[/]",
    JobState.BLOCKED: "[red]⊘[/]",
    JobState.SKIPPED: "[dim]-[/]",
    JobState.CANCELLED: "[red]■[/]",
    JobState.SUPERSEDED: "[dim]»[/]",
    JobState.RUNNING: "[yellow]▶[/]",
    JobState.WAITING: "[magenta]…[/]",
}


class ConsoleReporter:
    """Prints as things happen; with `show_logs=False` only state changes."""

    def __init__(self, console: Console, *, show_logs: bool = True) -> None:
        self.console = console
        self.show_logs = show_logs
        self.width = 12
        self.started = time.monotonic()
        self.total = 0
        self.finished = 0

    def run_started(self, run_id: int, plan: Plan) -> None:
        self.started = time.monotonic()
        self.finished = 0
        self.width = max([len(job.id) for job in plan.jobs] + [8])
        self.total = len(plan.jobs)
        runnable = sum(1 for job in plan.jobs if job.status is PlanStatus.INCLUDED)
        self.console.print(
            f"[bold]run {run_id}[/] · pipeline {escape(plan.pipeline)} · "
            f"{runnable} of {len(plan.jobs)} jobs to run"
        )

    def job_state(self, job_id: str, state: JobState, detail: str) -> None:
        if not self.show_logs and not state.finished:
            return  # quiet: one line per job, when it ends
        if state.finished:
            self.finished += 1
        progress = f"[dim]{self.finished:>3}/{self.total}[/]" if state.finished else "       "
        mark = _MARK.get(state, " ")
        name = escape(job_id.ljust(self.width))
        self.console.print(
            f"{progress} {mark} {name} {styled(state.value)} [dim]{escape(detail)}[/]"
        )

    def job_log(self, job_id: str, stream: Stream, line: str) -> None:
        if not self.show_logs:
            return
        colour = "red" if stream is Stream.STDERR else "blue" if stream is Stream.SYSTEM else "dim"
        self.console.print(
            f"[{colour}]{escape(job_id.ljust(self.width))} |[/] {escape(line)}", soft_wrap=True
        )

    def run_finished(self, run_id: int, state: RunState) -> None:
        took = time.monotonic() - self.started
        self.console.print(f"[bold]run {run_id}[/] {styled(state.value)} in {took:.2f}s")
