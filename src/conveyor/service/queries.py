"""Read side: run status, history and logs, all read back from the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conveyor.engine.executors.base import Stream
from conveyor.engine.joblog import log_filename, parse_log_line
from conveyor.errors import NotFoundError
from conveyor.service.project import Project
from conveyor.store.records import JobRecord, RunRecord
from conveyor.store.store import Store


@dataclass(frozen=True)
class RunView:
    run: RunRecord
    jobs: list[JobRecord]


@dataclass(frozen=True)
class LogLine:
    elapsed: float
    stream: Stream
    text: str


def run_view(store: Store, run_id: int | None) -> RunView:
    run = store.get_run(run_id) if run_id is not None else store.latest_run()
    if run is None:
        raise NotFoundError("no runs recorded yet", hint="start one with `conveyor run`")
    return RunView(run=run, jobs=store.get_jobs(run.id))


def job_log(project: Project, store: Store, run_id: int, job_id: str) -> list[LogLine]:
    """A job's log: from the blob store once finished, from the live file while running."""
    job = store.get_job(run_id, job_id)
    if job.log_blob:
        text = store.blobs.get_bytes(job.log_blob).decode("utf-8", errors="replace")
    else:
        live = live_log_path(project, run_id, job)
        text = live.read_text(encoding="utf-8", errors="replace") if live.exists() else ""
    return parse_log(text)


def parse_log(text: str) -> list[LogLine]:
    """A stored log's records (`elapsed\tstream\ttext` lines) as LogLines."""
    return [LogLine(*parse_log_line(raw)) for raw in text.splitlines() if raw]


def live_log_path(project: Project, run_id: int, job: JobRecord) -> Path:
    return project.run_dir(run_id) / "logs" / log_filename(job.job_id)


def resolve_job(store: Store, run_id: int, job: str) -> JobRecord:
    jobs = store.get_jobs(run_id)
    exact = [j for j in jobs if j.job_id == job]
    if exact:
        return exact[0]
    by_name = [j for j in jobs if j.name == job]
    if len(by_name) == 1:
        return by_name[0]
    names = ", ".join(j.job_id for j in jobs)
    raise NotFoundError(f"run {run_id} has no job '{job}'", hint=f"its jobs: {names}")
