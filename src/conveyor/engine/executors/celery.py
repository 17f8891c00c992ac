"""The `celery` executor: a job's command runs on a Celery worker of the job's queue.

The run's side sends the commit (repository URL and sha), the command and its
environment (sealed), and the files of the run's workspace that are not in the commit
(upstream outputs, as an artifact); it follows the attempt's log stream into the job's
log as lines arrive, and when the result comes lays the files the command created or
changed over the run's workspace. The engine then collects outputs, fills the cache and
applies gates exactly as for a local job.

A worker that dies lets its claim lapse (it renews it while it works): the job is sent
again, once, as the same attempt; a job nobody takes within the pickup timeout fails.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from conveyor.engine.executors.base import ExecRequest, ExecResult, LogSink, Stream
from conveyor.engine.workers.protocol import JobMessage, JobResult
from conveyor.engine.workers.settings import WorkerSettings
from conveyor.errors import ConveyorError
from conveyor.spec.globs import under_state_dir
from conveyor.states import FailureClass
from conveyor.vcs.git import remote_url, run_git

if TYPE_CHECKING:  # the registry lists this executor; what it uses loads on first use
    from conveyor.engine.workers.artifacts import ArtifactStore
    from conveyor.engine.workers.sealing import Sealer
    from conveyor.supply.oci.store import ImageStore

REPOSITORY_URL_VAR = "CONVEYOR_REPOSITORY_URL"


@dataclass(frozen=True)
class _Checkout:
    root: Path  # the run's checkout
    prefix: str  # the project's folder in it
    repository: str  # where workers clone it from


# One client per artifact store, kept for the process's lifetime: runs come and go (a
# server starts many), their connections stay open.
_STORES: dict[str, ImageStore] = {}


def _store(location: str) -> ImageStore:
    from conveyor.engine.workers.artifacts import open_store

    if location not in _STORES:
        store = _STORES[location] = open_store(location)
        close = getattr(store, "close", None)
        if callable(close):
            atexit.register(close)
    return _STORES[location]


class CeleryExecutor:
    name = "celery"

    def __init__(self, settings: WorkerSettings | None = None) -> None:
        self._settings = settings  # read from the environment on first use
        self._parts: tuple[Sealer, ArtifactStore] | None = None
        self._checkouts: dict[str, _Checkout] = {}

    async def execute(self, request: ExecRequest, sink: LogSink) -> ExecResult:
        started = time.monotonic()
        try:
            from conveyor.engine.workers import follow  # needs the `workers` extra
        except ImportError as error:
            detail = f"the celery executor needs pip install 'conveyor[workers]' ({error})"
            return _infrastructure(detail, started)
        expected: tuple[type[Exception], ...] = (ConveyorError, OSError, *follow.BROKER_ERRORS)
        try:
            return await self._execute(request, sink, started, follow)
        except follow.Failed as failed:
            return failed.result
        except expected as error:
            sink.write(Stream.SYSTEM, str(error))  # `conveyor logs` says why, not only the CLI
            return _infrastructure(str(error), started)

    async def _execute(
        self, request: ExecRequest, sink: LogSink, started: float, follow: ModuleType
    ) -> ExecResult:
        sealer, artifacts = self._connect()
        where = await asyncio.to_thread(self._checkout, request)
        attempt = uuid.uuid4().hex
        inputs = await asyncio.to_thread(_push_inputs, artifacts, where, attempt)
        message = JobMessage(
            attempt=attempt,
            job_id=request.env.get("CONVEYOR_JOB", ""),
            repository=where.repository,
            commit=_required_env(request, "CONVEYOR_COMMIT_SHA"),
            prefix=where.prefix,
            argv=list(request.argv),
            cwd=_relative_cwd(request.cwd, where),
            env={k: v for k, v in request.env.items() if os.environ.get(k) != v},
            timeout=request.timeout,
            kill_grace=request.kill_grace,
            inputs=inputs,
            run_root=str(where.root),
        )
        queue = request.env.get("CONVEYOR_QUEUE", "default")
        sealed = sealer.seal_json(message.to_json())
        result: JobResult = await follow.follow(
            self._settings_or_env(),
            sealer,
            sink,
            attempt=attempt,
            queue=queue,
            sealed=sealed,
            timeout=request.timeout,
            started=started,
        )
        if result.outputs is not None:
            workspace = where.root / where.prefix
            try:
                await asyncio.to_thread(artifacts.pull, result.outputs, workspace)
            except ConveyorError as error:
                detail = f"could not fetch the job's files from worker {result.worker}: {error}"
                raise ConveyorError(detail) from None
        failure = FailureClass(result.failure) if result.failure else None
        extra = {**result.extra, "worker": result.worker, "attempt": attempt}
        return ExecResult(
            result.exit_code, failure, time.monotonic() - started, result.detail, extra
        )

    def _settings_or_env(self) -> WorkerSettings:
        if self._settings is None:
            self._settings = WorkerSettings.from_env()
        return self._settings

    def _connect(self) -> tuple[Sealer, ArtifactStore]:
        from conveyor.engine.workers.artifacts import ArtifactStore
        from conveyor.engine.workers.sealing import Sealer

        if self._parts is None:
            settings = self._settings_or_env()
            sealer = Sealer(settings.key)
            artifacts = ArtifactStore(_store(settings.artifacts), sealer.seal, sealer.open)
            self._parts = (sealer, artifacts)
        return self._parts

    def _checkout(self, request: ExecRequest) -> _Checkout:
        workspace = request.env.get("CONVEYOR_WORKSPACE") or str(request.cwd)
        known = self._checkouts.get(workspace)
        if known is None:
            known = _find_checkout(Path(workspace), request.env.get(REPOSITORY_URL_VAR))
            self._checkouts[workspace] = known
        return known


def _find_checkout(workspace: Path, repository: str | None) -> _Checkout:
    top = run_git(workspace, "rev-parse", "--show-toplevel").decode().strip()
    root = Path(top)
    prefix = os.path.relpath(workspace.resolve(), root.resolve())
    url = repository or remote_url(root)
    if not url:
        raise ConveyorError(
            f"no repository URL for the workers to clone {root} from",
            hint=f"set {REPOSITORY_URL_VAR} to a URL the workers can reach",
        )
    return _Checkout(root=root, prefix="" if prefix == "." else prefix, repository=url)


def _push_inputs(artifacts: ArtifactStore, where: _Checkout, attempt: str) -> str | None:
    """The run workspace's files that are not as in the commit: upstream outputs,
    `.conveyor-out`, an uncommitted overlay. Deleted files are not carried."""
    status = subprocess.run(
        ["git", "--no-optional-locks", "status", "--porcelain=v1", "-z",
         "--untracked-files=all", "--ignored=traditional", "--", where.prefix or "."],
        cwd=where.root, capture_output=True, check=False,
    )  # fmt: skip
    if status.returncode != 0:
        error = status.stderr.decode(errors="replace").strip()
        raise ConveyorError(f"git status failed in {where.root}: {error}")
    names: list[str] = []
    records = status.stdout.split(b"\0")
    index = 0
    while index < len(records):
        record = records[index].decode(errors="surrogateescape")
        index += 1
        if len(record) < 4:
            continue
        code, name = record[:2], record[3:]
        if code[0] in "RC":
            index += 1  # the original path of a rename follows
        if "D" in code or under_state_dir(name) or name.endswith("/"):
            continue
        names.append(name)
    try:
        return artifacts.push(where.root, names, f"in-{attempt}")
    except ConveyorError as error:
        raise ConveyorError(f"could not send the job's files to the workers: {error}") from None


def _relative_cwd(cwd: Path, where: _Checkout) -> str:
    workspace = (where.root / where.prefix).resolve()
    resolved = cwd.resolve()
    if not resolved.is_relative_to(workspace):
        raise ConveyorError(f"the job's folder {cwd} is outside its workspace {workspace}")
    relative = os.path.relpath(resolved, workspace)
    return "" if relative == "." else relative


def _required_env(request: ExecRequest, name: str) -> str:
    value = request.env.get(name)
    if not value:
        raise ConveyorError(f"{name} is not set: a celery job runs inside a pipeline run")
    return value


def _infrastructure(detail: str, started: float) -> ExecResult:
    duration = time.monotonic() - started if started else 0.0
    return ExecResult(None, FailureClass.INFRASTRUCTURE, duration, detail)
