"""Runs and jobs: each change appends its event and updates the projection together.

Functions here take a connection already inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from conveyor.errors import InfrastructureError, NotFoundError
from conveyor.states import FailureClass, JobState, RunState, can_transition
from conveyor.store import events, redaction
from conveyor.store.procs import ProcessIdentity, is_dead_here
from conveyor.store.records import EventKind, JobRecord, NewJob, NewRun, RunRecord
from conveyor.store.schema import jobs, runs

# Job columns `set_job_state` may change besides the state itself.
JOB_FIELDS = frozenset(
    {
        "attempts",
        "exit_code",
        "failure",
        "detail",
        "started_at",
        "finished_at",
        "cache_key",
        "log_blob",
        "outputs_blob",
        "reason",
    }
)
# Free text a job's command or a commit can put a secret in: masked when stored.
_FREE_TEXT = ("detail", "reason", "message")
_PLANNED_EVENT_KEYS = ("ordinal", "name", "matrix", "needs", "plan_status", "reason")
_UNFINISHED_JOB_STATES = [state.value for state in JobState if not state.finished]


def insert_run(
    conn: sa.Connection,
    meta: NewRun,
    planned: Sequence[NewJob],
    owner: ProcessIdentity,
    now: float,
) -> int:
    run_values = {
        "pipeline": meta.pipeline,
        "state": RunState.RUNNING.value,
        "commit_sha": meta.commit_sha,
        "branch": meta.branch,
        "tag": meta.tag,
        "author": meta.author,
        "message": meta.message,
        "committed_at": meta.committed_at,
        "actor": meta.actor,
        "trigger": dict(meta.trigger),
        "parallelism": meta.parallelism,
        "started_at": now,
        "pid": owner.pid,
        "host": owner.host,
        "pid_started": owner.started,
        "workspace": meta.workspace,
    }
    run_values = redaction.fields(conn, run_values, _FREE_TEXT)
    run_id: int = conn.execute(sa.insert(runs).values(run_values).returning(runs.c.id)).scalar_one()
    job_rows = [_job_row(run_id, ordinal, job) for ordinal, job in enumerate(planned)]
    if job_rows:
        conn.execute(sa.insert(jobs), job_rows)
    created = events.event_row(
        EventKind.RUN_CREATED,
        now,
        run_id=run_id,
        state=RunState.RUNNING,
        commit_sha=meta.commit_sha,
        actor=meta.actor,
        data={key: value for key, value in run_values.items() if key != "state"},
    )
    events.append(conn, [created, *(_planned_event(row, meta, now) for row in job_rows)])
    return run_id


def _job_row(run_id: int, ordinal: int, job: NewJob) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "job_id": job.job_id,
        "ordinal": ordinal,
        "name": job.name,
        "matrix": dict(job.matrix),
        "state": job.state.value,
        "plan_status": job.plan_status,
        "reason": job.reason,
        "needs": list(job.needs),
        "attempts": 0,
    }


def _planned_event(job_row: Mapping[str, Any], meta: NewRun, now: float) -> dict[str, Any]:
    return events.event_row(
        EventKind.JOB_PLANNED,
        now,
        run_id=job_row["run_id"],
        job_id=job_row["job_id"],
        state=job_row["state"],
        commit_sha=meta.commit_sha,
        actor=meta.actor,
        data={key: job_row[key] for key in _PLANNED_EVENT_KEYS},
    )


def update_run_state(
    conn: sa.Connection,
    run_id: int,
    state: RunState,
    *,
    actor: str | None,
    data: Mapping[str, Any],
    now: float,
) -> None:
    row = conn.execute(
        sa.select(runs.c.state, runs.c.commit_sha).where(runs.c.id == run_id)
    ).first()
    if row is None:
        raise _run_not_found(run_id)
    old = RunState(row.state)
    if old.finished:
        raise InfrastructureError(f"run #{run_id} already ended {old}; it cannot become {state}")
    values: dict[str, Any] = {"state": state.value}
    if state.finished:
        values["finished_at"] = now
    conn.execute(sa.update(runs).where(runs.c.id == run_id).values(values))
    event = events.event_row(
        EventKind.RUN_STATE,
        now,
        run_id=run_id,
        state=state,
        commit_sha=row.commit_sha,
        actor=actor,
        data={"from": old.value, **data} | {k: v for k, v in values.items() if k != "state"},
    )
    events.append(conn, [event])


# Built once: a job changes state several times per run, on the engine's hot path.
_JOB_AND_COMMIT = (
    sa.select(jobs.c.state, jobs.c.started_at, runs.c.commit_sha)
    .select_from(jobs.join(runs))
    .where(jobs.c.run_id == sa.bindparam("b_run"), jobs.c.job_id == sa.bindparam("b_job"))
)
_UPDATE_JOB = sa.update(jobs).where(
    jobs.c.run_id == sa.bindparam("b_run"), jobs.c.job_id == sa.bindparam("b_job")
)


def update_job_state(
    conn: sa.Connection,
    run_id: int,
    job_id: str,
    state: JobState,
    *,
    fields: Mapping[str, Any],
    actor: str | None,
    now: float,
) -> None:
    unknown = set(fields) - JOB_FIELDS
    if unknown:
        raise InfrastructureError(f"set_job_state got unknown job fields: {sorted(unknown)}")
    key = {"b_run": run_id, "b_job": job_id}
    row = conn.execute(_JOB_AND_COMMIT, key).first()
    if row is None:
        raise InfrastructureError(f"run #{run_id} has no job {job_id!r}")
    old = JobState(row.state)
    if not can_transition(old, state):
        raise InfrastructureError(
            f"job {job_id!r} of run #{run_id} cannot go from {old} to {state}"
        )
    values = {key: events.plain(value) for key, value in fields.items()}
    values = redaction.fields(conn, values, _FREE_TEXT)
    if state is JobState.RUNNING and row.started_at is None:
        values.setdefault("started_at", now)
    if state.finished:
        values.setdefault("finished_at", now)
    conn.execute(_UPDATE_JOB, {**key, "state": state.value, **values})
    event = events.event_row(
        EventKind.JOB_STATE,
        now,
        run_id=run_id,
        job_id=job_id,
        state=state,
        commit_sha=row.commit_sha,
        actor=actor,
        data={"from": old.value, **values},
    )
    events.append(conn, [event])


def stale_run_ids(conn: sa.Connection) -> list[int]:
    """Runs still marked RUNNING whose process died on this host (one indexed query)."""
    rows = conn.execute(
        sa.select(runs.c.id, runs.c.pid, runs.c.host, runs.c.pid_started).where(
            runs.c.state == RunState.RUNNING.value
        )
    )
    return [row.id for row in rows if is_dead_here(row.pid, row.host, row.pid_started)]


def interrupt_run(conn: sa.Connection, run_id: int, *, actor: str, reason: str, now: float) -> bool:
    """Mark a dead process's run and its unfinished jobs INTERRUPTED; False if it already ended."""
    state = conn.execute(sa.select(runs.c.state).where(runs.c.id == run_id)).scalar_one()
    if state != RunState.RUNNING.value:
        return False  # another process recovered it, or it ended after we looked
    unfinished = conn.execute(
        sa.select(jobs.c.job_id)
        .where(jobs.c.run_id == run_id, jobs.c.state.in_(_UNFINISHED_JOB_STATES))
        .order_by(jobs.c.ordinal)
    ).scalars()
    for job_id in list(unfinished):
        update_job_state(
            conn,
            run_id,
            job_id,
            JobState.INTERRUPTED,
            fields={"reason": reason},
            actor=actor,
            now=now,
        )
    update_run_state(
        conn, run_id, RunState.INTERRUPTED, actor=actor, data={"reason": reason}, now=now
    )
    return True


def select_run(conn: sa.Connection, run_id: int) -> RunRecord:
    row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
    if row is None:
        raise _run_not_found(run_id)
    return _run_from_row(row._mapping)


def select_runs(
    conn: sa.Connection,
    *,
    limit: int | None,
    pipeline: str | None = None,
    branch: str | None = None,
    state: RunState | None = None,
    before_id: int | None = None,
    after_id: int | None = None,
    commit_prefix: str | None = None,
) -> list[RunRecord]:
    """Newest first; `before_id` pages (keyset). With `after_id`, the oldest runs newer
    than it, oldest first (a page towards the newest). `commit_prefix`: a sha's start."""
    if after_id is not None:
        query = sa.select(runs).where(runs.c.id > after_id).order_by(runs.c.id.asc())
    else:
        query = sa.select(runs).order_by(runs.c.id.desc())
    query = query.limit(limit)
    if before_id is not None:
        query = query.where(runs.c.id < before_id)
    if commit_prefix:
        # A range, not LIKE: SQLite's LIKE ignores case and so never uses the index.
        query = query.where(
            runs.c.commit_sha >= commit_prefix, runs.c.commit_sha < _next_prefix(commit_prefix)
        )
    if pipeline is not None:
        query = query.where(runs.c.pipeline == pipeline)
    if branch is not None:
        query = query.where(runs.c.branch == branch)
    if state is not None:
        query = query.where(runs.c.state == state.value)
    return [_run_from_row(row._mapping) for row in conn.execute(query)]


def _next_prefix(prefix: str) -> str:
    """The smallest string after every string starting with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def select_jobs(conn: sa.Connection, run_id: int) -> list[JobRecord]:
    query = sa.select(jobs).where(jobs.c.run_id == run_id).order_by(jobs.c.ordinal)
    return [_job_from_row(row._mapping) for row in conn.execute(query)]


def select_job(conn: sa.Connection, run_id: int, job_id: str) -> JobRecord:
    row = conn.execute(
        sa.select(jobs).where(jobs.c.run_id == run_id, jobs.c.job_id == job_id)
    ).first()
    if row is not None:
        return _job_from_row(row._mapping)
    select_run(conn, run_id)  # a missing run is reported as such
    known = conn.execute(
        sa.select(jobs.c.job_id).where(jobs.c.run_id == run_id).order_by(jobs.c.ordinal)
    ).scalars()
    raise NotFoundError(
        f"run #{run_id} has no job {job_id!r}",
        hint=f"its jobs are: {', '.join(known) or '(none)'}",
    )


def _run_not_found(run_id: int) -> NotFoundError:
    return NotFoundError(f"no run #{run_id}", hint="`conveyor history` lists the recorded runs")


def _run_from_row(row: sa.RowMapping) -> RunRecord:
    return RunRecord(
        id=row["id"],
        pipeline=row["pipeline"],
        state=RunState(row["state"]),
        commit_sha=row["commit_sha"],
        branch=row["branch"],
        tag=row["tag"],
        author=row["author"],
        message=row["message"],
        committed_at=row["committed_at"],
        actor=row["actor"],
        trigger=row["trigger"],
        parallelism=row["parallelism"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        pid=row["pid"],
        host=row["host"],
        workspace=row["workspace"],
    )


def _job_from_row(row: sa.RowMapping) -> JobRecord:
    return JobRecord(
        run_id=row["run_id"],
        job_id=row["job_id"],
        ordinal=row["ordinal"],
        name=row["name"],
        matrix=row["matrix"],
        state=JobState(row["state"]),
        plan_status=row["plan_status"],
        reason=row["reason"],
        needs=tuple(row["needs"]),
        attempts=row["attempts"],
        exit_code=row["exit_code"],
        failure=FailureClass(row["failure"]) if row["failure"] is not None else None,
        detail=row["detail"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        cache_key=row["cache_key"],
        log_blob=row["log_blob"],
        outputs_blob=row["outputs_blob"],
    )
