"""What each command asks a Conveyor server (`conveyor --server URL ...`), as the service's
dataclasses for the command's own printer; `conveyor whoami`; and `run`, which triggers a
run on the server and follows it live through the event stream."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.cli.output import OutputFormat, OutputOption, console, emit_json, err_console
from conveyor.cli.remote import RemoteClient, ServerEvent, path_of
from conveyor.errors import ConveyorError, ExitCode, InfrastructureError, NotFoundError
from conveyor.states import JobState, RunState

if TYPE_CHECKING:
    from rich.console import Console

    from conveyor.approvals.model import ApprovalStatus
    from conveyor.cli.live import ConsoleReporter
    from conveyor.flags.store import FlagRecord, KillOutcome
    from conveyor.service.audit import AuditVerdict
    from conveyor.service.environments import EnvironmentView
    from conveyor.service.queries import LogLine, RunView
    from conveyor.store.ledger.history import HistoryEntry
    from conveyor.store.records import JobRecord, RunRecord

QUEUE_POLL_SECONDS = 0.1


def register(app: typer.Typer) -> None:
    app.command("whoami")(whoami)


def whoami(output: Annotated[OutputFormat, OutputOption] = OutputFormat.TEXT) -> None:
    """Who the server takes you for (your token's user and roles); needs --server."""
    from conveyor.cli.target import SERVER_ENV, client

    remote = client()
    if remote is None:
        raise ConveyorError(
            "`conveyor whoami` asks a server who you are",
            hint=f"conveyor --server URL whoami (or set {SERVER_ENV})",
        )
    found = remote.get(path_of("whoami"))
    if output is OutputFormat.JSON:
        emit_json(found)
        return
    roles = ", ".join(found.get("roles") or []) or "none"
    console.print(f"{escape(str(found.get('name')))} (roles: {escape(roles)}) on {remote.base_url}")


# --- runs ---------------------------------------------------------------------------------


def run_view(remote: RemoteClient, run_id: int | None) -> RunView:
    from conveyor.service.queries import RunView

    if run_id is None:
        newest = remote.items(path_of("runs"), limit=1)
        if not newest:
            raise NotFoundError(
                "no runs recorded yet", hint="start one with `conveyor --server URL run`"
            )
        run_id = int(newest[0]["id"])
    return remote.get_as(RunView, path_of("runs", run_id))


def runs(remote: RemoteClient, limit: int, branch: str | None) -> list[RunRecord]:
    from conveyor.store.records import RunRecord

    found = remote.items(path_of("runs"), {"branch": branch}, limit=limit)
    return remote.decoded(list[RunRecord], found, path_of("runs"))


def pick_job(view: RunView, job: str) -> JobRecord:
    """The job named by id, or by name when only one has it (as locally)."""
    exact = [j for j in view.jobs if j.job_id == job]
    if exact:
        return exact[0]
    by_name = [j for j in view.jobs if j.name == job]
    if len(by_name) == 1:
        return by_name[0]
    names = ", ".join(j.job_id for j in view.jobs)
    raise NotFoundError(f"run {view.run.id} has no job '{job}'", hint=f"its jobs: {names}")


def job_log(remote: RemoteClient, run_id: int, job_id: str) -> list[LogLine]:
    """A job's whole (masked) log, read in ranges."""
    return log_lines(log_bytes(remote, run_id, job_id).decode("utf-8", errors="replace"))


def log_bytes(remote: RemoteClient, run_id: int, job_id: str) -> bytes:
    """A job's log as it is now, read in ranges until the size the server reports."""
    data = bytearray()
    while True:
        piece = remote.get_bytes(
            path_of("runs", run_id, "jobs", job_id, "log"), {"offset": len(data)}
        )
        data += piece.data
        size = _int(piece.headers.get("x-log-size"))
        if not piece.data or size is None or len(data) >= size:
            return bytes(data)


def log_lines(text: str) -> list[LogLine]:
    from conveyor.service.queries import parse_log

    return parse_log(text)


def follow_log(remote: RemoteClient, run_id: int, job_id: str) -> None:
    """Print a job's log as it grows, until the job ends (the `log:<run>:<job>` topic).

    The stream carries what is written after it connects: the log so far is read in
    ranges once connected, and the stream's chunks are trimmed to what was not printed.
    """
    events = remote.events([f"log:{run_id}:{job_id}"])
    for event in events:
        if event.kind == "connected":
            break
    so_far = log_bytes(remote, run_id, job_id)
    end = so_far.rfind(b"\n") + 1
    _print_log(so_far[:end])
    pending = so_far[end:]
    for event in events:
        if event.kind == "log":
            offset = int(event.data.get("offset", 0))
            chunk = str(event.data.get("text", "")).encode()
            if offset + len(chunk) <= end:
                continue  # printed from the range already
            chunk = chunk[max(0, end - offset) :]
            end = max(end, offset) + len(chunk)
            pending = b""
            _print_log(chunk)
        elif event.kind == "log.end":
            _print_log(pending)
            return


def _print_log(data: bytes) -> None:
    for line in log_lines(data.decode("utf-8", errors="replace")):
        sys.stdout.write(line.text + "\n")
    sys.stdout.flush()


# --- run: trigger, then follow -----------------------------------------------------------


@dataclass
class RemoteRun:
    """What `conveyor --server URL run` shows of a run while it goes."""

    remote: RemoteClient
    run_id: int
    show_logs: bool
    shown: dict[str, JobState] = field(default_factory=dict)


def trigger(
    remote: RemoteClient, *, commit: str | None, branch: str | None, rerun_failed: int | None
) -> int:
    """Queue a run on the server; its run number once a worker started it."""
    if rerun_failed is not None:
        answer = remote.post(path_of("runs", rerun_failed, "rerun-failed"))
    else:
        answer = remote.post(path_of("runs"), {"commit": commit, "branch": branch})
    if not isinstance(answer, dict):
        answer = {}
    queue_id = answer.get("queue_id")
    while answer.get("run_id") is None:
        if answer.get("state") == "cancelled" or queue_id is None:
            raise ConveyorError(
                f"the server's queued run {queue_id} ended before it started: "
                f"{answer.get('reason') or answer.get('state')}"
            )
        time.sleep(QUEUE_POLL_SECONDS)
        answer = remote.get(path_of("queue", queue_id))
    return int(answer["run_id"])


def run(
    remote: RemoteClient,
    *,
    commit: str | None,
    branch: str | None,
    rerun_failed: int | None,
    detach: bool,
    quiet: bool,
    output: OutputFormat,
) -> int:
    """`conveyor run` on a server; the exit code is the run's, as locally."""
    run_id = trigger(remote, commit=commit, branch=branch, rerun_failed=rerun_failed)
    if detach:
        if output is OutputFormat.JSON:
            emit_json({"run": run_id, "state": RunState.RUNNING.value})
        else:
            console.print(f"run {run_id} started on {remote.base_url}")
            console.print(f"[dim]follow it: conveyor --server {remote.base_url} status {run_id}[/]")
        return int(ExitCode.OK)
    shown = console if output is OutputFormat.TEXT else err_console
    try:
        view = _follow_run(RemoteRun(remote, run_id, show_logs=not quiet), shown, quiet)
    except KeyboardInterrupt:  # Ctrl-C stops the watching, not the server's run
        err_console.print(
            f"run {run_id} goes on on the server: "
            f"conveyor --server {remote.base_url} status {run_id}"
        )
        raise
    return _report_run(view, output)


def _follow_run(state: RemoteRun, shown: Console, quiet: bool) -> RunView:
    """Print the run as it goes, from its topic of the event stream: a line per job state
    (as locally), a finished job's log before its last line (unless quiet)."""
    from conveyor.cli.live import ConsoleReporter

    reporter = ConsoleReporter(shown, show_logs=not quiet)
    remote, run_id = state.remote, state.run_id
    view: RunView | None = None
    for event in remote.events([f"run:{run_id}"]):
        if event.kind in {"connected", "run.state"}:
            fresh = run_view(remote, run_id)  # what happened before the stream began
            if view is None:
                _start(reporter, fresh)
            view = fresh
            _catch_up(reporter, state, view)
            if view.run.state.finished:
                break
        elif event.kind == "job.state":
            _job_event(reporter, state, event)
    if view is None or not view.run.state.finished:
        raise InfrastructureError(
            f"the server at {remote.base_url} closed the event stream before run {run_id} ended",
            hint=f"conveyor --server {remote.base_url} status {run_id}",
        )
    reporter.run_finished(run_id, view.run.state)
    return view


def _start(reporter: ConsoleReporter, view: RunView) -> None:
    reporter.started = time.monotonic()
    reporter.width = max([len(job.job_id) for job in view.jobs] + [8])
    reporter.total = len(view.jobs)
    runnable = sum(1 for job in view.jobs if job.plan_status in (None, "included"))
    reporter.console.print(
        f"[bold]run {view.run.id}[/] · pipeline {escape(view.run.pipeline)} · "
        f"{runnable} of {len(view.jobs)} jobs to run"
    )


def _catch_up(reporter: ConsoleReporter, state: RemoteRun, view: RunView) -> None:
    for job in view.jobs:
        if job.state is not JobState.PENDING:
            _show_job(reporter, state, job.job_id, job.state, job.detail or job.reason or "")


def _job_event(reporter: ConsoleReporter, state: RemoteRun, event: ServerEvent) -> None:
    job_id, value = event.data.get("job_id"), event.data.get("state")
    if not isinstance(job_id, str) or not isinstance(value, str):
        return
    if value not in JobState.__members__.values():
        return
    data = event.data.get("data") or {}
    detail = data.get("detail") or data.get("reason") or ""
    _show_job(reporter, state, job_id, JobState(value), str(detail))


def _show_job(
    reporter: ConsoleReporter, state: RemoteRun, job_id: str, job_state: JobState, detail: str
) -> None:
    """A job's new state, once; never an older one after its end. An ended job's log is
    printed before its last line, as the local run streams it."""
    from conveyor.engine.executors.base import Stream

    before = state.shown.get(job_id)
    if before is job_state or (before is not None and before.finished):
        return
    state.shown[job_id] = job_state
    if job_state.finished and state.show_logs and job_state is not JobState.SKIPPED:
        for line in job_log(state.remote, state.run_id, job_id):
            reporter.job_log(job_id, Stream(line.stream), line.text)
    reporter.job_state(job_id, job_state, detail)


def _report_run(view: RunView, output: OutputFormat) -> int:
    failed = [
        job.job_id
        for job in view.jobs
        if not (job.state.succeeded or job.state is JobState.SKIPPED)
    ]
    if output is OutputFormat.JSON:
        emit_json(
            {
                "run": view.run.id,
                "state": view.run.state.value,
                "jobs": {job.job_id: job.state.value for job in view.jobs},
                "failed": failed,
            }
        )
    elif view.run.state is not RunState.SUCCESS:
        console.print(
            f"[dim]see the logs: conveyor logs {view.run.id} "
            f"{escape(failed[0]) if failed else ''}[/]"
        )
    if view.run.state is not RunState.SUCCESS:
        return int(ExitCode.PIPELINE_FAILED)
    return int(ExitCode.OK)


# --- approvals, environments, flags, audit ------------------------------------------------


def decide(
    remote: RemoteClient, run_id: int, verdict: str, environment: str | None, comment: str
) -> ApprovalStatus:
    from conveyor.approvals.model import ApprovalStatus

    path = path_of("runs", run_id, verdict)
    answer = remote.post(path, {"environment": environment, "comment": comment})
    return remote.decoded(ApprovalStatus, answer, path)


def approvals(remote: RemoteClient, pending: bool) -> list[ApprovalStatus]:
    from conveyor.approvals.model import ApprovalStatus

    path = path_of("approvals")
    found = remote.items(path, {"pending": "true" if pending else None})
    return remote.decoded(list[ApprovalStatus], found, path)


def run_approvals(remote: RemoteClient, run_id: int) -> list[ApprovalStatus]:
    from conveyor.approvals.model import ApprovalStatus

    path = path_of("runs", run_id, "approvals")
    return remote.decoded(list[ApprovalStatus], remote.items(path), path)


def environment_history(remote: RemoteClient, name: str) -> list[HistoryEntry]:
    from conveyor.store.ledger.history import HistoryEntry

    path = path_of("environments", name, "history")
    return remote.decoded(list[HistoryEntry], remote.items(path), path)


def environments(remote: RemoteClient) -> list[EnvironmentView]:
    from conveyor.service.environments import EnvironmentView

    path = path_of("environments")
    return remote.decoded(list[EnvironmentView], remote.items(path), path)


def environment(remote: RemoteClient, name: str) -> EnvironmentView:
    from conveyor.service.environments import EnvironmentView

    return remote.get_as(EnvironmentView, path_of("environments", name))


def flags(remote: RemoteClient, environment: str) -> tuple[int, list[FlagRecord]]:
    """The environment's version and its flags, sorted by name (as `flags ls`)."""
    from conveyor.flags.store import FlagRecord

    path = path_of("environments", environment, "flags")
    answer = remote.get(path)
    listed = answer.get("flags", answer.get("items")) if isinstance(answer, dict) else answer
    version = answer.get("version", 0) if isinstance(answer, dict) else 0
    records = remote.decoded(list[FlagRecord], listed, path)
    return int(version), sorted(records, key=lambda record: record.flag.name)


def set_flag(remote: RemoteClient, environment: str, name: str, on: bool) -> FlagRecord:
    from conveyor.flags.store import FlagRecord

    path = path_of("environments", environment, "flags", name)
    return remote.decoded(FlagRecord, remote.put(path, {"enabled": on}), path)


def rollout_flag(
    remote: RemoteClient, environment: str, name: str, percent: int, stickiness: str | None
) -> FlagRecord:
    from conveyor.flags.store import FlagRecord

    path = path_of("environments", environment, "flags", name, "rollout")
    body = {"percentage": percent, **({"stickiness": stickiness} if stickiness else {})}
    return remote.decoded(FlagRecord, remote.post(path, body), path)


def kill_flag(remote: RemoteClient, environment: str, name: str, reason: str | None) -> KillOutcome:
    from conveyor.flags.store import KillOutcome

    path = path_of("environments", environment, "flags", name, "kill")
    return remote.decoded(KillOutcome, remote.post(path, {"reason": reason}), path)


def audit_verify(remote: RemoteClient, head: str | None) -> AuditVerdict:
    from conveyor.service.audit import AuditVerdict

    return remote.get_as(AuditVerdict, path_of("audit", "verify"), {"head": head})


def local_only(option: str) -> ConveyorError:
    """An option a server cannot honour, refused rather than ignored."""
    return ConveyorError(
        f"{option} runs locally only: not with --server",
        hint="run it without --server (and without CONVEYOR_SERVER) in the project's folder",
    )


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None
