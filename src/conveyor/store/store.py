"""The Store: Conveyor's durable state, one short transaction per change.

Every state change appends its event and updates the `runs`/`jobs` projection in the same
transaction, so the event log stays the source of truth and the projections never lag it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa

from conveyor.states import JobState, RunState
from conveyor.store import audit, cache, locks, redaction, reports, runs
from conveyor.store import events as event_log
from conveyor.store.blobs import BlobStore
from conveyor.store.db import default_url, read_transaction, write_transaction
from conveyor.store.ledger import DeployLedger
from conveyor.store.migrate import open_engine
from conveyor.store.private import private_dir
from conveyor.store.procs import this_process
from conveyor.store.records import (
    CacheEntry,
    EventKind,
    EventRecord,
    JobRecord,
    JobStateChange,
    LockState,
    LockTicket,
    NewJob,
    NewRun,
    ReportRecord,
    RunRecord,
)

RECOVERY_ACTOR = "conveyor"
RECOVERY_REASON = "the conveyor process died"


class Store:
    def __init__(self, state_dir: Path, url: str | None = None) -> None:
        private_dir(state_dir)
        self.state_dir = state_dir
        # The secrets this store masks in everything it writes (store/redaction.py).
        self.redaction = redaction.Redaction()
        engine = open_engine(url or default_url(state_dir))
        self.engine: sa.Engine = engine.execution_options(**{redaction.OPTION: self.redaction})
        self.blobs = BlobStore(state_dir / "blobs", self.redaction)
        self._owner = this_process()
        # Environments, releases, deploys, samples and history (store/ledger).
        self.ledger = DeployLedger.over(self.engine, self._owner)

    def close(self) -> None:
        self.engine.dispose()

    def mask_secrets(self, redactor: redaction.Redactor) -> None:
        """From now on, mask these secrets in every event, detail, report and text output
        this store writes."""
        self.redaction.add(redactor)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # Runs and jobs

    def create_run(self, meta: NewRun, jobs: Sequence[NewJob]) -> int:
        with write_transaction(self.engine) as conn:
            return runs.insert_run(conn, meta, jobs, self._owner, time.time())

    def set_run_state(
        self, run_id: int, state: RunState, *, actor: str | None = None, **data: Any
    ) -> None:
        """Record a run's new state; `data` goes into the event. Finished runs stay finished."""
        with write_transaction(self.engine) as conn:
            runs.update_run_state(conn, run_id, state, actor=actor, data=data, now=time.time())

    def set_job_state(
        self,
        run_id: int,
        job_id: str,
        state: JobState,
        *,
        actor: str | None = None,
        **fields: Any,
    ) -> None:
        """Record a job's new state and any of `runs.JOB_FIELDS`.

        `started_at` defaults to now on the first RUNNING, `finished_at` on a finished state.
        An illegal transition raises InfrastructureError.
        """
        with write_transaction(self.engine) as conn:
            runs.update_job_state(
                conn, run_id, job_id, state, fields=fields, actor=actor, now=time.time()
            )

    def set_job_states(self, changes: Sequence[JobStateChange]) -> None:
        """Several jobs' changes in one transaction, in order (the engine's state writer);
        each as `set_job_state` with its own `now`."""
        with write_transaction(self.engine) as conn:
            for change in changes:
                runs.update_job_state(
                    conn,
                    change.run_id,
                    change.job_id,
                    change.state,
                    fields=change.fields,
                    actor=change.actor,
                    now=change.now,
                )

    def get_run(self, run_id: int) -> RunRecord:
        with read_transaction(self.engine) as conn:
            return runs.select_run(conn, run_id)

    def latest_run(self, pipeline: str | None = None) -> RunRecord | None:
        found = self.list_runs(1, pipeline=pipeline)
        return found[0] if found else None

    def list_runs(
        self,
        limit: int = 20,
        *,
        pipeline: str | None = None,
        branch: str | None = None,
        state: RunState | None = None,
        before_id: int | None = None,
        after_id: int | None = None,
        commit_prefix: str | None = None,
    ) -> list[RunRecord]:
        """Newest first; `before_id` pages by id (keyset); with `after_id`, the oldest runs
        newer than it, oldest first; `commit_prefix` a sha's start."""
        with read_transaction(self.engine) as conn:
            return runs.select_runs(
                conn,
                limit=limit,
                pipeline=pipeline,
                branch=branch,
                state=state,
                before_id=before_id,
                after_id=after_id,
                commit_prefix=commit_prefix,
            )

    def last_successful_run(self, pipeline: str, branch: str | None) -> RunRecord | None:
        """The newest successful run of `pipeline` on `branch` (any branch when None)."""
        with read_transaction(self.engine) as conn:
            found = runs.select_runs(
                conn, limit=1, pipeline=pipeline, branch=branch, state=RunState.SUCCESS
            )
        return found[0] if found else None

    def get_jobs(self, run_id: int) -> list[JobRecord]:
        """In planned order."""
        with read_transaction(self.engine) as conn:
            return runs.select_jobs(conn, run_id)

    def get_job(self, run_id: int, job_id: str) -> JobRecord:
        with read_transaction(self.engine) as conn:
            return runs.select_job(conn, run_id, job_id)

    def events(
        self, *, run_id: int | None = None, after_id: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        """Events in the order they happened, those with id > `after_id`."""
        with read_transaction(self.engine) as conn:
            return event_log.select(conn, run_id=run_id, after_id=after_id, limit=limit)

    def recover_interrupted(self) -> list[int]:
        """Mark runs whose process died on this host INTERRUPTED; returns their ids.

        Cheap when nothing is stale: one indexed read and no write transaction.
        """
        with read_transaction(self.engine) as conn:
            stale = runs.stale_run_ids(conn)
        if not stale:
            return []
        recovered = []
        now = time.time()
        with write_transaction(self.engine) as conn:
            for run_id in stale:
                if runs.interrupt_run(
                    conn, run_id, actor=RECOVERY_ACTOR, reason=RECOVERY_REASON, now=now
                ):
                    locks.release_run(
                        conn, run_id, actor=RECOVERY_ACTOR, reason=RECOVERY_REASON, now=now
                    )
                    recovered.append(run_id)
        return recovered

    # Job cache

    def cache_get(self, key: str) -> CacheEntry | None:
        with read_transaction(self.engine) as conn:
            return cache.get(conn, key)

    def cache_put(self, entry: CacheEntry) -> None:
        with write_transaction(self.engine) as conn:
            cache.put(conn, entry, time.time())

    def cache_latest(self, pipeline: str, job_id: str) -> CacheEntry | None:
        """The newest entry for this job, to explain what changed on a miss."""
        with read_transaction(self.engine) as conn:
            return cache.latest(conn, pipeline, job_id)

    def cache_previous(
        self, pipeline: str, job_id: str, branch: str | None
    ) -> tuple[CacheEntry, str | None] | None:
        """The entry to explain a miss against (this branch's newest, else any), and the
        branch of the run that made it."""
        with read_transaction(self.engine) as conn:
            return cache.previous(conn, pipeline, job_id, branch)

    # Concurrency groups

    def lock_enqueue(self, group: str, run_id: int, job_id: str, *, supersede: bool) -> LockTicket:
        """Queue for `group` (acquiring at once if free); with `supersede`, queued tickets of
        other runs become SUPERSEDED and are listed in the returned ticket."""
        with write_transaction(self.engine) as conn:
            return locks.enqueue(
                conn,
                group,
                run_id,
                job_id,
                supersede=supersede,
                owner=self._owner,
                now=time.time(),
            )

    def lock_poll(self, ticket_id: int) -> LockState:
        """QUEUED, HOLDING (acquired now or before), SUPERSEDED or RELEASED."""
        with read_transaction(self.engine) as conn:
            unchanged = locks.peek(conn, ticket_id)
        if unchanged is not None:
            return unchanged  # waiting behind live tickets: no write lock taken
        with write_transaction(self.engine) as conn:
            return locks.poll(conn, ticket_id, time.time())

    def lock_release(self, ticket_id: int) -> None:
        with write_transaction(self.engine) as conn:
            locks.release(conn, ticket_id, time.time())

    # Reports (evidence published by jobs)

    def add_report(
        self, run_id: int, job_id: str, kind: str, digest: str, summary: dict[str, Any]
    ) -> None:
        with write_transaction(self.engine) as conn:
            reports.add(
                conn,
                run_id=run_id,
                job_id=job_id,
                kind=kind,
                digest=digest,
                summary=summary,
                now=time.time(),
            )

    def record_decision(
        self,
        kind: EventKind,
        *,
        actor: str,
        data: dict[str, Any],
        run_id: int | None = None,
        commit_sha: str | None = None,
    ) -> None:
        """A person's decision as an event, chained into the audit log if its kind is."""
        row = event_log.event_row(
            kind, time.time(), run_id=run_id, commit_sha=commit_sha, actor=actor, data=data
        )
        with write_transaction(self.engine) as conn:
            event_log.append(conn, [row])

    # The audit log (store/audit.py)

    def audit_entries(self, last: int | None = None) -> list[audit.AuditEntry]:
        with read_transaction(self.engine) as conn:
            return audit.entries(conn, last)

    def audit_verify(self, expected_head: str | None = None) -> list[audit.Problem]:
        return self.audit_check(expected_head)[1]

    def audit_check(
        self, expected_head: str | None = None
    ) -> tuple[list[audit.AuditEntry], list[audit.Problem]]:
        """The chain and its problems, from one read of the log and the events."""
        with read_transaction(self.engine) as conn:
            return audit.check(conn, expected_head)

    def audit_signed_heads(self) -> list[audit.SignedHead]:
        with read_transaction(self.engine) as conn:
            return audit.signed_heads(conn)

    def add_audit_signed_head(self, head: audit.SignedHead) -> None:
        with write_transaction(self.engine) as conn:
            audit.save_signed_head(conn, head)

    def reports(self, run_id: int, kind: str | None = None) -> list[ReportRecord]:
        with read_transaction(self.engine) as conn:
            return reports.of_run(conn, run_id, kind)

    def runs_that_built(self, digest: str) -> list[int]:
        """Runs whose build-image job made the image `digest`, oldest first."""
        return self.runs_with_report(reports.IMAGE_REPORT, "digest", digest)

    def runs_with_report(self, kind: str, key: str, value: str) -> list[int]:
        """Runs that published a `kind` report whose summary's `key` is `value`, oldest first."""
        with read_transaction(self.engine) as conn:
            return reports.runs_with(conn, kind, key, value)
