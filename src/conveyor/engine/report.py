"""What the engine tells whoever watches a run (the CLI's live view, a server later)."""

from __future__ import annotations

from typing import Protocol

from conveyor.engine.executors.base import Stream
from conveyor.engine.plan import Plan
from conveyor.states import JobState, RunState


class Reporter(Protocol):
    def run_started(self, run_id: int, plan: Plan) -> None: ...

    def job_state(self, job_id: str, state: JobState, detail: str) -> None: ...

    def job_log(self, job_id: str, stream: Stream, line: str) -> None: ...

    def run_finished(self, run_id: int, state: RunState) -> None: ...


class SilentReporter:
    """A reporter that shows nothing (tests, `--quiet` callers)."""

    def run_started(self, run_id: int, plan: Plan) -> None:
        pass

    def job_state(self, job_id: str, state: JobState, detail: str) -> None:
        pass

    def job_log(self, job_id: str, stream: Stream, line: str) -> None:
        pass

    def run_finished(self, run_id: int, state: RunState) -> None:
        pass
