"""The view of a run: state changes and prefixed, masked log lines; on a terminal, a live
table of the running jobs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from conveyor.cli.output import Verbosity, styled
from conveyor.engine.executors.base import Stream
from conveyor.engine.plan import Plan, PlanStatus
from conveyor.states import JobState, RunState

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

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


class LiveReporter(ConsoleReporter):
    """On a terminal: one table of the run's jobs, redrawn in place, with each running
    job's elapsed time and latest log line (an image build's, a test's); the run's lines
    stay above it. Job ends and the run's end are printed as the plain reporter does."""

    def __init__(self, console: Console) -> None:
        super().__init__(console, show_logs=False)
        self.states: dict[str, JobState] = {}
        self.since: dict[str, float] = {}
        self.last_line: dict[str, str] = {}
        self.live: Live | None = None

    def run_started(self, run_id: int, plan: Plan) -> None:
        from rich.live import Live

        super().run_started(run_id, plan)
        self.states = {job.id: JobState.PENDING for job in plan.jobs}
        self.live = Live(
            self, console=self.console, refresh_per_second=8, transient=True, auto_refresh=True
        )
        self.live.start()

    def job_state(self, job_id: str, state: JobState, detail: str) -> None:
        self.states[job_id] = state
        if state is JobState.RUNNING:
            self.since[job_id] = time.monotonic()
        super().job_state(job_id, state, detail)  # a job's end stays printed above

    def job_log(self, job_id: str, stream: Stream, line: str) -> None:
        if line.strip():
            self.last_line[job_id] = line.strip()

    def run_finished(self, run_id: int, state: RunState) -> None:
        self.stop()
        super().run_finished(run_id, state)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __rich__(self) -> Table:
        from rich.table import Table

        table = Table(box=None, pad_edge=False, show_header=False)
        now = time.monotonic()
        active = [j for j, s in self.states.items() if s in (JobState.RUNNING, JobState.WAITING)]
        for job_id in active:
            state = self.states[job_id]
            took = f"{now - self.since.get(job_id, now):5.1f}s"
            last = self.last_line.get(job_id, "")[: max(20, self.console.width - self.width - 30)]
            table.add_row(
                _MARK.get(state, " "),
                escape(job_id.ljust(self.width)),
                took,
                f"[dim]{escape(last)}[/]",
            )
        done = sum(1 for s in self.states.values() if s.finished)
        table.add_row("", f"[dim]{done}/{len(self.states)} jobs done[/]", "", "")
        return table


def reporter_for(console: Console, level: Verbosity) -> ConsoleReporter:
    """Live on a terminal at normal verbosity; otherwise plain lines (logs unless quiet)."""
    if level is Verbosity.NORMAL and console.is_terminal:
        return LiveReporter(console)
    return ConsoleReporter(console, show_logs=level is not Verbosity.QUIET)
