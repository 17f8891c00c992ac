"""The executor Protocol: run one command in a workspace, stream its output, report how it ended.

Executors know nothing of pipelines, caches or the store. The local subprocess executor
is the first backend; container and remote executors implement the same Protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from conveyor.states import FailureClass


class Stream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    SYSTEM = "system"  # lines Conveyor itself writes into a job's log


class LogSink(Protocol):
    """Receives a job's output line by line (without the trailing newline)."""

    def write(self, stream: Stream, line: str) -> None: ...


@dataclass(frozen=True)
class ExecRequest:
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    timeout: float | None = None
    # Seconds between SIGTERM and SIGKILL when the process group must be stopped.
    kill_grace: float = 2.0


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # None when the process never started or was killed by a signal
    failure: FailureClass | None  # None means success
    duration: float
    detail: str = ""  # e.g. "timed out after 30s", "bash: not found"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None


class Executor(Protocol):
    name: str

    async def execute(self, request: ExecRequest, sink: LogSink) -> ExecResult:
        """Run the request to completion.

        Must never raise for a failing command: failures come back as `ExecResult`.
        On `asyncio.CancelledError` it kills the whole process group, then re-raises.
        """
        ...
