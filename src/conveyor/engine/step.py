"""The step Protocol: what a job does once the engine has decided to run it.

A `run:` job is the built-in `shell` step; a `uses:` job names another step. The engine
gives a step its validated parameters and a `StepContext`; the step runs commands only
through the context's executor, so the same step works on every executor backend.

A step has two phases. `run` does the work and is cached by content: on a cache hit it
is skipped and its outputs restored. `finalize` is never cached: it runs after `run` or
after a cache hit, and is where decisions that depend on more than the job's inputs
belong (a gate compares with the target branch's baseline and with today's date).

What a step needs from the host beyond commands comes through the context as Protocols
the host implements: `Evidence` (reports and baselines) and `Environments` (deploying
to, and finding, the environments of conveyor.yml). The engine and the steps therefore
never import the service layer that implements them.
"""

from __future__ import annotations

import shutil
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from conveyor.engine.executors.base import ExecRequest, ExecResult, Executor, LogSink, Stream
from conveyor.engine.names import safe_name
from conveyor.errors import ConveyorError
from conveyor.spec.gates import Gates
from conveyor.spec.images import ImagesConfig
from conveyor.states import FailureClass


class Evidence(Protocol):
    """Where a step publishes reports and finds the target branch's baseline."""

    @property
    def gates(self) -> Gates: ...

    @property
    def images(self) -> ImagesConfig:
        """The pipeline's `images:` settings (store, keys, vulnerability DB, admission)."""
        ...

    def publish(self, kind: str, content: bytes, summary: dict[str, Any]) -> str:
        """Store a report (e.g. kind "sarif") for this job; returns its digest."""
        ...

    def baseline(self, kind: str) -> list[bytes]:
        """Reports of `kind` from the target branch's last successful run (may be empty)."""
        ...


class NoEvidence:
    """For steps run outside a pipeline (tests): publishes nothing, has no baseline."""

    def __init__(self, gates: Gates | None = None, images: ImagesConfig | None = None) -> None:
        self._gates = gates or Gates()
        self._images = images or ImagesConfig()
        self.published: list[tuple[str, bytes, dict[str, Any]]] = []

    @property
    def gates(self) -> Gates:
        return self._gates

    @property
    def images(self) -> ImagesConfig:
        return self._images

    def publish(self, kind: str, content: bytes, summary: dict[str, Any]) -> str:
        self.published.append((kind, content, summary))
        return ""

    def baseline(self, kind: str) -> list[bytes]:
        return []


Say = Callable[[str], None]


@dataclass(frozen=True)
class LiveRelease:
    """What an environment serves now, as the host's records say."""

    url: str  # no trailing slash
    release_id: str
    digest: str | None
    health_path: str  # its readiness path, to check that it answers


class Environments(Protocol):
    """The environments of the run's conveyor.yml, for the steps that deploy to one or
    test what one serves (`deploy`, `e2e`, `perf`, `dast`). Blocking calls: a step runs
    them in a thread."""

    def await_approval(
        self, environment: str, *, repository: str, digest: str, say: Say, stop: threading.Event
    ) -> str | None:
        """Wait for the environment's approval gate, if it has one (a cancelled job sets
        `stop`); returns why the image may not be deployed, or None."""
        ...

    def deploy(
        self, environment: str, image: str, *, say: Say, command_path: str | None
    ) -> str | None:
        """Deploy `image` (smoke commands find their tools on `command_path`); returns
        why it did not succeed, or None."""
        ...

    def live_release(self, environment: str) -> LiveRelease:
        """Raises ConveyorError when the environment is unknown, never deployed or has
        no live release."""
        ...


class NoEnvironments:
    """For steps run outside a pipeline run: there are no environments to act on."""

    def _refuse(self) -> ConveyorError:
        return ConveyorError(
            "no environments here: this step runs inside a pipeline run",
            hint="run it with `conveyor run`",
        )

    def await_approval(
        self, environment: str, *, repository: str, digest: str, say: Say, stop: threading.Event
    ) -> str | None:
        raise self._refuse()

    def deploy(
        self, environment: str, image: str, *, say: Say, command_path: str | None
    ) -> str | None:
        raise self._refuse()

    def live_release(self, environment: str) -> LiveRelease:
        raise self._refuse()


class _TailSink:
    """Passes lines on and keeps the last few of stderr and stdout, for failure details."""

    def __init__(self, inner: LogSink, keep: int) -> None:
        self.inner = inner
        self.stderr: deque[str] = deque(maxlen=keep)
        self.stdout: deque[str] = deque(maxlen=keep)

    def write(self, stream: Stream, line: str) -> None:
        if stream is Stream.STDERR:
            self.stderr.append(line)
        elif stream is Stream.STDOUT:
            self.stdout.append(line)
        self.inner.write(stream, line)


@dataclass(frozen=True)
class ToolRun:
    result: ExecResult
    stderr_tail: list[str]
    stdout_tail: list[str]

    def failure_detail(self, tool: str, keep: int = 8) -> str:
        """The tool's last meaningful lines: blank and decoration lines (ruff's and
        semgrep's errors span several, some of them blank) are skipped."""
        lines = [" ".join(line.split()) for line in self.stderr_tail or self.stdout_tail]
        tail = [line for line in lines if line.strip(" |^")][-keep:]
        how = self.result.detail or f"exit {self.result.exit_code}"
        return f"{tool} failed ({how}): {' | '.join(tail) if tail else 'no output'}"


@dataclass(frozen=True)
class StepContext:
    job_id: str
    workspace: Path
    env: Mapping[str, str]  # the whole environment for commands, secrets included
    timeout: float | None
    executor: Executor
    log: LogSink
    evidence: Evidence = field(default_factory=NoEvidence)
    environments: Environments = field(default_factory=NoEnvironments)

    async def exec(self, argv: list[str], *, cwd: Path | None = None) -> ExecResult:
        request = ExecRequest(
            argv=argv, cwd=cwd or self.workspace, env=dict(self.env), timeout=self.timeout
        )
        return await self.executor.execute(request, self.log)

    async def run_tool(self, argv: list[str], *, cwd: Path | None = None) -> ToolRun:
        """Run a tool, streaming its output to the log and keeping its last lines."""
        sink = _TailSink(self.log, keep=20)
        request = ExecRequest(
            argv=argv, cwd=cwd or self.workspace, env=dict(self.env), timeout=self.timeout
        )
        result = await self.executor.execute(request, sink)
        return ToolRun(result, list(sink.stderr), list(sink.stdout))

    def which(self, tool: str) -> str | None:
        return shutil.which(tool, path=self.env.get("PATH"))

    def say(self, line: str) -> None:
        self.log.write(Stream.SYSTEM, line)


RAW_DIR = ".conveyor-out"  # each job's own files for later jobs and its finalize


def job_output_dir(workspace: Path, job_id: str) -> Path:
    """Where a job keeps files its finalize or dependants read: `.conveyor-out/<job>`."""
    return workspace / RAW_DIR / safe_name(job_id)


def passed(duration: float = 0.0, detail: str = "") -> ExecResult:
    return ExecResult(0, None, duration, detail)


def failed(
    detail: str,
    duration: float = 0.0,
    *,
    exit_code: int | None = 1,
    failure: FailureClass = FailureClass.EXIT_CODE,
) -> ExecResult:
    return ExecResult(exit_code, failure, duration, detail)


class Step(Protocol):
    name: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]
    # Bump when the step's behaviour changes, so cached results of the old one are not reused.
    version: ClassVar[str]

    def describe(self, params: BaseModel) -> str:
        """The command line or summary that forms the cache key and the plan's explanation."""
        ...

    def outputs(self, params: BaseModel) -> list[str]:
        """Globs of files the step always produces (kept and cached like `outputs:`)."""
        ...

    async def run(self, params: BaseModel, ctx: StepContext) -> ExecResult: ...

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        """After `run` (ran is its result) or a cache hit (ran is None); never cached."""
        ...


class SimpleStep:
    """Defaults for steps with no extra outputs and nothing to decide after running."""

    def outputs(self, params: BaseModel) -> list[str]:
        return []

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        return ran if ran is not None else passed()


class FinalizeOnlyStep(SimpleStep):
    """A step whose work must happen on every run, cache hit or not: a side effect (deploy,
    push, sign) or an answer that depends on more than the job's inputs (a scan against
    today's database, a test of what is deployed now). `run` does nothing, so the cache
    has nothing to skip; subclasses do the work in `finalize`."""

    name: ClassVar[str]
    why_in_finalize: ClassVar[str]  # for the log: why this step is never cached

    def describe(self, params: BaseModel) -> str:
        return f"{self.name} {params.model_dump_json()}"

    async def run(self, params: BaseModel, ctx: StepContext) -> ExecResult:
        return passed(detail=f"{self.name} works in finalize: {self.why_in_finalize}")


def every_run_reason(step: Step) -> str | None:
    """Why `step` does all its work on every run (a FinalizeOnlyStep, or any step that
    says `why_in_finalize`), or None when a cache hit skips some of it. A hit would skip
    nothing of such a step, so the runner does not look one up: its status says it ran
    (`success`), never `cached`."""
    why = getattr(step, "why_in_finalize", None)
    return f"{step.name} runs on every run: {why}" if isinstance(why, str) else None
