"""Deploys: one per rollout of a release to an environment, its owner and progress, and
the commands people send it (promote, abort, pause, resume)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from conveyor.errors import NotFoundError
from conveyor.states import DeployState
from conveyor.store import events as event_log
from conveyor.store import redaction
from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.ledger.releases import upsert
from conveyor.store.procs import ProcessIdentity, is_dead_here
from conveyor.store.records import EventKind, EventRecord
from conveyor.store.schema import deploys, events


@dataclass(frozen=True)
class DeployRecord:
    id: int
    environment: str
    release_id: str
    repository: str
    digest: str
    previous_release: str | None
    actor: str
    run_id: int | None
    state: DeployState
    reason: str | None
    started_at: float
    finished_at: float | None
    pid: int | None
    host: str | None
    progress: Mapping[str, Any] | None = None
    pid_started: int | None = None  # the owner's start time: a reused pid is not the owner

    @property
    def owner_dead(self) -> bool:
        return is_dead_here(self.pid, self.host, self.pid_started)


class Deploys:
    """Deploys this process starts or adopts are owned by `owner`."""

    def __init__(self, engine: sa.Engine, owner: ProcessIdentity) -> None:
        self.engine = engine
        self.owner = owner

    def begin(
        self,
        environment: str,
        *,
        release_id: str,
        repository: str,
        digest: str,
        ports: Sequence[int],
        previous: str | None,
        actor: str,
        run_id: int | None,
        approval: Mapping[str, Any] | None = None,
    ) -> DeployRecord:
        """Record the intent to deploy (the desired state) before anything starts.
        `approval`: the approval the deploy is made under (its request and run), kept in
        the deploy's `deploy.started` event for the release record."""
        now = time.time()
        with write_transaction(self.engine) as conn:
            upsert(
                conn,
                environment=environment,
                release_id=release_id,
                repository=repository,
                digest=digest,
                ports=ports,
                now=now,
            )
            values = {
                "environment": environment,
                "release_id": release_id,
                "repository": repository,
                "digest": digest,
                "previous_release": previous,
                "actor": actor,
                "run_id": run_id,
                "state": DeployState.IN_PROGRESS.value,
                "started_at": now,
                "pid": self.owner.pid,
                "pid_started": self.owner.started,
                "host": self.owner.host,
            }
            inserted = conn.execute(sa.insert(deploys).values(values)).inserted_primary_key
            assert inserted is not None
            deploy_id = int(inserted[0])
            data = {
                "environment": environment,
                "deploy_id": deploy_id,
                "release": release_id,
                "repository": repository,
                "digest": digest,
                "previous": previous,
                "ports": list(ports),
                "approval": dict(approval) if approval is not None else None,
            }
            row = event_log.event_row(
                EventKind.DEPLOY_STARTED, now, run_id=run_id, actor=actor, data=data
            )
            event_log.append(conn, [row])
        return self.get(deploy_id)

    def adopt(self, deploy_id: int, reason: str) -> DeployRecord:
        """Take over an interrupted deploy: this process now owns it."""
        now = time.time()
        with write_transaction(self.engine) as conn:
            conn.execute(
                sa.update(deploys)
                .where(deploys.c.id == deploy_id)
                .values(pid=self.owner.pid, host=self.owner.host, pid_started=self.owner.started)
            )
            record = _deploy(_select_deploy(conn, deploy_id))
            data = {"environment": record.environment, "deploy_id": deploy_id, "reason": reason}
            row = event_log.event_row(EventKind.DEPLOY_RESUMED, now, data=data)
            event_log.append(conn, [row])
        return self.get(deploy_id)

    def finish(self, deploy_id: int, state: DeployState, reason: str | None) -> None:
        now = time.time()
        with write_transaction(self.engine) as conn:
            record = _deploy(_select_deploy(conn, deploy_id))
            if record.state.finished:
                return
            reason = redaction.of(conn).value(reason)  # e.g. a smoke command's output
            conn.execute(
                sa.update(deploys)
                .where(deploys.c.id == deploy_id)
                .values(state=state.value, reason=reason, finished_at=now)
            )
            data = {
                "environment": record.environment,
                "deploy_id": deploy_id,
                "release": record.release_id,
                "digest": record.digest,
                "reason": reason,
            }
            row = event_log.event_row(
                EventKind.DEPLOY_FINISHED, now, run_id=record.run_id, state=state, data=data
            )
            event_log.append(conn, [row])

    def set_progress(self, deploy_id: int, progress: Mapping[str, Any]) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                sa.update(deploys)
                .where(deploys.c.id == deploy_id)
                .values(progress=redaction.of(conn).value(dict(progress)))
            )

    def add_command(self, environment: str, deploy_id: int, command: str, actor: str) -> int:
        """A person's command to a running release (promote, abort, pause, resume)."""
        now = time.time()
        with write_transaction(self.engine) as conn:
            data = {"environment": environment, "deploy_id": deploy_id, "command": command}
            row = event_log.event_row(EventKind.RELEASE_COMMAND, now, actor=actor, data=data)
            return event_log.append_one(conn, row)

    def commands(self, deploy_id: int, after_id: int = 0) -> list[EventRecord]:
        """Commands sent to this deploy, oldest first, with event ids above `after_id`."""
        with read_transaction(self.engine) as conn:
            query = (
                sa.select(events)
                .where(
                    events.c.kind == EventKind.RELEASE_COMMAND.value,
                    events.c.id > after_id,
                    events.c.data["deploy_id"].as_integer() == deploy_id,
                )
                .order_by(events.c.id)
            )
            return [event_log.event_from_row(row._mapping) for row in conn.execute(query)]

    def started(self, deploy_id: int) -> EventRecord | None:
        """The deploy's `deploy.started` event: what was known when it began (its approval)."""
        with read_transaction(self.engine) as conn:
            query = sa.select(events).where(
                events.c.kind == EventKind.DEPLOY_STARTED.value,
                events.c.data["deploy_id"].as_integer() == deploy_id,
            )
            row = conn.execute(query.order_by(events.c.id).limit(1)).first()
        return event_log.event_from_row(row._mapping) if row is not None else None

    def get(self, deploy_id: int) -> DeployRecord:
        with read_transaction(self.engine) as conn:
            return _deploy(_select_deploy(conn, deploy_id))

    def of_environment(
        self, environment: str, state: DeployState | None = None
    ) -> list[DeployRecord]:
        with read_transaction(self.engine) as conn:
            query = sa.select(deploys).where(deploys.c.environment == environment)
            if state is not None:
                query = query.where(deploys.c.state == state.value)
            rows = conn.execute(query.order_by(deploys.c.id))
            return [_deploy(row._mapping) for row in rows]

    def in_progress(self) -> list[DeployRecord]:
        """Every deploy in progress, of every environment (a controller's adoption poll)."""
        with read_transaction(self.engine) as conn:
            query = sa.select(deploys).where(deploys.c.state == DeployState.IN_PROGRESS.value)
            return [_deploy(row._mapping) for row in conn.execute(query.order_by(deploys.c.id))]

    def succeeded_digest(self, environment: str, digest: str) -> bool:
        with read_transaction(self.engine) as conn:
            query = sa.select(deploys.c.id).where(
                deploys.c.environment == environment,
                deploys.c.digest == digest,
                deploys.c.state == DeployState.SUCCEEDED.value,
            )
            return conn.execute(query.limit(1)).first() is not None

    def succeeded_release(self, environment: str, release_id: str) -> bool:
        """Whether a deploy of `release_id` to `environment` succeeded there (it was live
        there after every check): what `rollback --to` may go back to."""
        with read_transaction(self.engine) as conn:
            query = sa.select(deploys.c.id).where(
                deploys.c.environment == environment,
                deploys.c.release_id == release_id,
                deploys.c.state == DeployState.SUCCEEDED.value,
            )
            return conn.execute(query.limit(1)).first() is not None


def _select_deploy(conn: sa.Connection, deploy_id: int) -> sa.RowMapping:
    row = conn.execute(sa.select(deploys).where(deploys.c.id == deploy_id)).first()
    if row is None:
        raise NotFoundError(f"deploy {deploy_id} does not exist")
    return row._mapping


def _deploy(row: sa.RowMapping) -> DeployRecord:
    return DeployRecord(
        id=row["id"],
        environment=row["environment"],
        release_id=row["release_id"],
        repository=row["repository"],
        digest=row["digest"],
        previous_release=row["previous_release"],
        actor=row["actor"],
        run_id=row["run_id"],
        state=DeployState(row["state"]),
        reason=row["reason"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        pid=row["pid"],
        host=row["host"],
        progress=row["progress"],
        pid_started=row["pid_started"],
    )
