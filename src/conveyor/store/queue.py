"""The server's run queue in the store: entries are queued, claimed by one worker, then
done or cancelled. A claim records its owner's process, so an entry whose owner died
(a server killed with SIGKILL) is queued again by the next server (`requeue_orphans`).

On PostgreSQL, servers sharing the database claim with `SELECT ... FOR UPDATE SKIP
LOCKED`: an entry another server is claiming is passed over, not waited for, and a poll
of an empty queue takes no write lock. A cancel passes over an entry being claimed too
(it is as good as claimed), so a claim and a cancel never wait for each other.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from conveyor.states import RunState
from conveyor.store import events as event_log
from conveyor.store.db import lock_writes, read_transaction, write_transaction
from conveyor.store.procs import ProcessIdentity, is_dead_here, this_host
from conveyor.store.records import EventKind
from conveyor.store.runs import interrupt_run
from conveyor.store.schema import run_queue, runs
from conveyor.store.session_locks import is_held, session_lock

# How long a claim on another host may go without its entry's lock: the server claims,
# then the run's process (started at once) takes the lock.
CLAIM_GRACE_SECONDS = 60.0
_Claim = sa.Row[Any, Any, Any, Any, Any, Any]  # a claimed entry's owner columns


class QueueState(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"  # a worker is running it
    DONE = "done"  # its run finished (whatever its state)
    CANCELLED = "cancelled"  # cancelled before it started


@dataclass(frozen=True)
class NewQueued:
    repository: str
    commit_sha: str
    branch: str | None
    trigger: Mapping[str, Any]
    actor: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class QueuedRun:
    id: int
    state: QueueState
    requested_at: float
    repository: str
    commit_sha: str
    branch: str | None
    trigger: Mapping[str, Any]
    actor: str
    options: Mapping[str, Any]
    run_id: int | None
    reason: str | None
    pipeline: str | None = None
    claimed_at: float | None = None
    finished_at: float | None = None


def enqueue(engine: sa.Engine, entry: NewQueued) -> int:
    now = time.time()
    with write_transaction(engine) as conn:
        inserted = conn.execute(
            run_queue.insert().values(
                state=QueueState.QUEUED.value,
                requested_at=now,
                repository=entry.repository,
                commit_sha=entry.commit_sha,
                branch=entry.branch,
                trigger=dict(entry.trigger),
                actor=entry.actor,
                options=dict(entry.options),
            )
        )
        key = inserted.inserted_primary_key
        assert key is not None
        queue_id = int(key[0])
        event_log.append_one(
            conn,
            event_log.event_row(
                EventKind.RUN_QUEUED,
                now,
                commit_sha=entry.commit_sha,
                actor=entry.actor,
                data={"queue_id": queue_id, "branch": entry.branch, "trigger": dict(entry.trigger)},
            ),
        )
    return queue_id


def claim_next(engine: sa.Engine, owner: ProcessIdentity) -> QueuedRun | None:
    """The oldest queued entry no other server is claiming, now claimed by `owner`; None
    when there is none."""
    with write_transaction(engine, lock_first=False) as conn:
        row = (
            conn.execute(
                sa.select(run_queue)
                .where(run_queue.c.state == QueueState.QUEUED.value)
                .order_by(run_queue.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        lock_writes(conn)  # the row is this claim's; the event needs the write lock
        now = time.time()
        conn.execute(
            run_queue.update()
            .where(run_queue.c.id == row["id"])
            .values(
                state=QueueState.CLAIMED.value,
                claimed_at=now,
                pid=owner.pid,
                host=owner.host,
                pid_started=owner.started,
            )
        )
        _dequeued(conn, row, now, outcome="started")
    return _entry({**row, "state": QueueState.CLAIMED.value, "claimed_at": now})


def take_over(engine: sa.Engine, queue_id: int, owner: ProcessIdentity) -> None:
    """The process that runs a claimed entry becomes its owner: if only the server dies,
    the run goes on, and its entry is not queued again while that process lives."""
    with write_transaction(engine) as conn:
        conn.execute(
            run_queue.update()
            .where(run_queue.c.id == queue_id)
            .values(pid=owner.pid, host=owner.host, pid_started=owner.started)
        )


def cancel_queued(engine: sa.Engine, queue_id: int, actor: str) -> bool:
    """Cancel an entry that no worker has claimed; False if it was claimed or is done."""
    now = time.time()
    with write_transaction(engine) as conn:
        unclaimed = (
            sa.select(run_queue.c.id)
            .where(run_queue.c.id == queue_id, run_queue.c.state == QueueState.QUEUED.value)
            .with_for_update(skip_locked=True)
        )
        if conn.execute(unclaimed).first() is None:
            return False  # claimed, done, or being claimed right now
        changed = conn.execute(
            run_queue.update()
            .where(run_queue.c.id == queue_id, run_queue.c.state == QueueState.QUEUED.value)
            .values(
                state=QueueState.CANCELLED.value,
                finished_at=now,
                reason=f"cancelled by {actor} before it started",
            )
        ).rowcount
        if changed:
            row = conn.execute(sa.select(run_queue).where(run_queue.c.id == queue_id)).mappings()
            _dequeued(conn, row.one(), now, outcome="cancelled", actor=actor)
    return bool(changed)


def _dequeued(
    conn: sa.Connection,
    row: Mapping[str, Any] | sa.RowMapping,
    now: float,
    *,
    outcome: str,
    actor: str | None = None,
) -> None:
    event_log.append_one(
        conn,
        event_log.event_row(
            EventKind.RUN_DEQUEUED,
            now,
            commit_sha=row["commit_sha"],
            actor=actor or row["actor"],
            data={"queue_id": row["id"], "outcome": outcome, "branch": row["branch"]},
        ),
    )


def set_run(engine: sa.Engine, queue_id: int, run_id: int, pipeline: str | None = None) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            run_queue.update()
            .where(run_queue.c.id == queue_id)
            .values(run_id=run_id, pipeline=pipeline)
        )


def finish(engine: sa.Engine, queue_id: int, state: QueueState, reason: str | None = None) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            run_queue.update()
            .where(run_queue.c.id == queue_id)
            .values(state=state.value, finished_at=time.time(), reason=reason)
        )


def requeue_orphans(engine: sa.Engine, watched: Collection[int] = ()) -> list[int]:
    """Claimed entries whose owner process is gone go back to the queue (oldest first),
    but for the `watched` ones (their process's end is being handled by whoever started
    it). A run an orphan on another host had started is marked interrupted with it (a
    process on this host is recovered by `Project.recover`). Cheap when there are none:
    one read, no write transaction."""
    claimed = sa.select(
        run_queue.c.id,
        run_queue.c.pid,
        run_queue.c.host,
        run_queue.c.pid_started,
        run_queue.c.claimed_at,
        run_queue.c.run_id,
    ).where(run_queue.c.state == QueueState.CLAIMED.value, run_queue.c.id.not_in(list(watched)))
    with read_transaction(engine) as conn:
        if not _orphans(conn, conn.execute(claimed)):
            return []
    now = time.time()
    with write_transaction(engine) as conn:
        rows = list(conn.execute(claimed))
        dead = _orphans(conn, rows)
        if dead:
            conn.execute(
                run_queue.update()
                .where(run_queue.c.id.in_(dead), run_queue.c.state == QueueState.CLAIMED.value)
                .values(state=QueueState.QUEUED.value, pid=None, host=None, pid_started=None)
            )
        for row in rows:
            if row.id in dead and row.run_id is not None and row.host != this_host():
                reason = f"its process on {row.host} is gone (its run queue lock was free)"
                interrupt_run(conn, row.run_id, actor="conveyor", reason=reason, now=now)
    return dead


def _orphans(
    conn: sa.Connection, rows: Iterable[sa.Row[Any, Any, Any, Any, Any, Any]]
) -> list[int]:
    return [row.id for row in rows if _is_orphan(conn, row)]


def _is_orphan(conn: sa.Connection, row: _Claim) -> bool:
    """Its process is dead here; or, on PostgreSQL, it ran on another host, was claimed
    long enough ago to have taken its entry's lock, and no session holds that lock."""
    if is_dead_here(row.pid, row.host, row.pid_started):
        return True
    if conn.dialect.name != "postgresql" or row.host in (None, this_host()):
        return False
    if time.time() - (row.claimed_at or 0.0) < CLAIM_GRACE_SECONDS:
        return False
    return not is_held(conn, entry_lock_name(row.id))


def entry_lock_name(queue_id: int) -> str:
    return f"run queue entry {queue_id}"


@contextmanager
def held_by_this_process(engine: sa.Engine, queue_id: int) -> Iterator[None]:
    """On PostgreSQL, hold the entry's session lock while this process runs it: a server
    on another host sees the entry orphaned when the lock is free (this process died, or
    its host did). On SQLite every process is on this host: its pid says it."""
    if engine.dialect.name != "postgresql":
        yield
        return
    holder = f"pid {os.getpid()} on {this_host()}"
    with session_lock(engine, entry_lock_name(queue_id), holder):
        yield


def get(engine: sa.Engine, queue_id: int) -> QueuedRun | None:
    with read_transaction(engine) as conn:
        row = (
            conn.execute(sa.select(run_queue).where(run_queue.c.id == queue_id)).mappings().first()
        )
    return None if row is None else _entry(row)


def pending(
    engine: sa.Engine, after_id: int | None = None, limit: int | None = None
) -> list[QueuedRun]:
    """Queued and claimed entries, oldest first (those after `after_id`, at most `limit`)."""
    query = (
        sa.select(run_queue)
        .where(run_queue.c.state.in_([QueueState.QUEUED.value, QueueState.CLAIMED.value]))
        .order_by(run_queue.c.id)
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(run_queue.c.id > after_id)
    with read_transaction(engine) as conn:
        rows = conn.execute(query).mappings()
        return [_entry(row) for row in rows]


def for_run(engine: sa.Engine, run_id: int) -> QueuedRun | None:
    """The entry that started run `run_id`, if the server started it."""
    with read_transaction(engine) as conn:
        row = (
            conn.execute(
                sa.select(run_queue).where(run_queue.c.run_id == run_id).order_by(run_queue.c.id)
            )
            .mappings()
            .first()
        )
    return None if row is None else _entry(row)


def run_owner(engine: sa.Engine, run_id: int) -> ProcessIdentity | None:
    """The process that records run `run_id`, while the run is running."""
    with read_transaction(engine) as conn:
        row = conn.execute(
            sa.select(runs.c.pid, runs.c.host, runs.c.pid_started).where(
                runs.c.id == run_id, runs.c.state == RunState.RUNNING.value
            )
        ).first()
    if row is None or row.pid is None or row.host is None:
        return None
    return ProcessIdentity(pid=row.pid, host=row.host, started=row.pid_started)


def _entry(row: Mapping[str, Any] | sa.RowMapping) -> QueuedRun:
    return QueuedRun(
        id=row["id"],
        state=QueueState(row["state"]),
        requested_at=row["requested_at"],
        repository=row["repository"],
        commit_sha=row["commit_sha"],
        branch=row["branch"],
        trigger=row["trigger"],
        actor=row["actor"],
        options=row["options"],
        run_id=row["run_id"],
        reason=row["reason"],
        pipeline=row.get("pipeline"),
        claimed_at=row.get("claimed_at"),
        finished_at=row.get("finished_at"),
    )
