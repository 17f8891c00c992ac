"""Environments, releases, deploys and signal samples: the release controller's ledger.

Every change of intent appends its event in the same transaction, so deploy history and
rollbacks are read back from the event log (`history`), and the tables are projections the
controller reconciles to after a crash.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from conveyor.errors import NotFoundError
from conveyor.states import DeployState, ReleaseState
from conveyor.store import events as event_log
from conveyor.store import redaction
from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.procs import ProcessIdentity, is_dead_here
from conveyor.store.records import EventKind, EventRecord
from conveyor.store.schema import deploys, environments, events, releases, signal_samples


@dataclass(frozen=True)
class EnvironmentRecord:
    name: str
    port: int
    admin_port: int
    live_release: str | None
    warm_release: str | None
    routes: Mapping[str, Any]  # a route table as JSON (routers' routes_to_json form)
    generation: int
    updated_at: float


@dataclass(frozen=True)
class ReleaseRecord:
    release_id: str
    environment: str
    repository: str
    digest: str
    ports: tuple[int, ...]
    state: ReleaseState
    created_at: float
    updated_at: float


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


@dataclass(frozen=True)
class SampleRow:
    environment: str
    release_id: str
    ts: float
    weight: int
    signals: Mapping[str, Any]
    saturation: Mapping[str, Any] | None


@dataclass(frozen=True)
class HistoryEntry:
    """One deploy or rollback as the event log tells it."""

    kind: str  # "deploy" or "rollback"
    environment: str
    release_id: str
    digest: str | None
    actor: str | None
    started_at: float
    finished_at: float | None
    result: str  # a DeployState value, or "switched" for a rollback
    reason: str | None
    deploy_id: int | None


class DeployLedger:
    """The ledger over the store's engine; one short transaction per call."""

    def __init__(self, engine: sa.Engine, owner: ProcessIdentity) -> None:
        self.engine = engine
        self.owner = owner

    # --- environments -----------------------------------------------------------------

    def environment(self, name: str) -> EnvironmentRecord | None:
        with read_transaction(self.engine) as conn:
            row = conn.execute(sa.select(environments).where(environments.c.name == name)).first()
        return _environment(row._mapping) if row else None

    def environments(self) -> list[EnvironmentRecord]:
        with read_transaction(self.engine) as conn:
            rows = conn.execute(sa.select(environments).order_by(environments.c.name))
            return [_environment(row._mapping) for row in rows]

    def ensure_environment(self, name: str, port: int, admin_port: int) -> EnvironmentRecord:
        """The environment's row, created with these ports if it has none yet."""
        with write_transaction(self.engine) as conn:
            found = conn.execute(sa.select(environments).where(environments.c.name == name)).first()
            if found is None:
                values = {
                    "name": name,
                    "port": port,
                    "admin_port": admin_port,
                    "routes": {"backends": []},
                    "generation": 0,
                    "updated_at": time.time(),
                }
                conn.execute(sa.insert(environments).values(values))
        record = self.environment(name)
        assert record is not None
        return record

    def set_ports(self, name: str, port: int, admin_port: int) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                sa.update(environments)
                .where(environments.c.name == name)
                .values(port=port, admin_port=admin_port, updated_at=time.time())
            )

    def set_intent(
        self,
        name: str,
        *,
        routes: Mapping[str, Any],
        live: str | None,
        warm: str | None,
        event: EventKind,
        actor: str | None,
        data: Mapping[str, Any],
        release_states: Mapping[str, ReleaseState] | None = None,
    ) -> int:
        """Record what should serve now (routes, live and warm releases) with its event, and
        the releases' new states; returns the environment's new generation."""
        now = time.time()
        with write_transaction(self.engine) as conn:
            generation = _generation(conn, name) + 1
            conn.execute(
                sa.update(environments)
                .where(environments.c.name == name)
                .values(
                    routes=dict(routes),
                    live_release=live,
                    warm_release=warm,
                    generation=generation,
                    updated_at=now,
                )
            )
            for release_id, state in (release_states or {}).items():
                _set_release_state(conn, name, release_id, state, now=now, actor=actor)
            payload = {"environment": name, "generation": generation, **data}
            event_log.append(conn, [event_log.event_row(event, now, actor=actor, data=payload)])
        return generation

    def generation(self, name: str) -> int:
        with read_transaction(self.engine) as conn:
            return _generation(conn, name)

    # --- releases ---------------------------------------------------------------------

    def release(self, release_id: str, environment: str | None = None) -> ReleaseRecord | None:
        """The release `release_id`; with `environment`, only if it is one of that
        environment's (an id alone may name another environment's release)."""
        with read_transaction(self.engine) as conn:
            query = sa.select(releases).where(releases.c.release_id == release_id)
            if environment is not None:
                query = query.where(releases.c.environment == environment)
            row = conn.execute(query).first()
        return _release(row._mapping) if row else None

    def releases(self, environment: str) -> list[ReleaseRecord]:
        with read_transaction(self.engine) as conn:
            query = (
                sa.select(releases)
                .where(releases.c.environment == environment)
                .order_by(releases.c.created_at)
            )
            return [_release(row._mapping) for row in conn.execute(query)]

    def set_release_state(
        self, environment: str, release_id: str, state: ReleaseState, actor: str | None = None
    ) -> None:
        with write_transaction(self.engine) as conn:
            _set_release_state(conn, environment, release_id, state, now=time.time(), actor=actor)

    # --- deploys ----------------------------------------------------------------------

    def begin_deploy(
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
    ) -> DeployRecord:
        """Record the intent to deploy (the desired state) before anything starts."""
        now = time.time()
        with write_transaction(self.engine) as conn:
            _upsert_release(
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
            }
            row = event_log.event_row(
                EventKind.DEPLOY_STARTED, now, run_id=run_id, actor=actor, data=data
            )
            event_log.append(conn, [row])
        return self.deploy(deploy_id)

    def adopt_deploy(self, deploy_id: int, reason: str) -> DeployRecord:
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
        return self.deploy(deploy_id)

    def finish_deploy(self, deploy_id: int, state: DeployState, reason: str | None) -> None:
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

    def register_release(
        self, environment: str, release_id: str, repository: str, digest: str, ports: Sequence[int]
    ) -> None:
        """A release started beside a deploy's own (a canary's baseline)."""
        with write_transaction(self.engine) as conn:
            _upsert_release(
                conn,
                environment=environment,
                release_id=release_id,
                repository=repository,
                digest=digest,
                ports=ports,
                now=time.time(),
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

    def deploy(self, deploy_id: int) -> DeployRecord:
        with read_transaction(self.engine) as conn:
            return _deploy(_select_deploy(conn, deploy_id))

    def deploys(self, environment: str, state: DeployState | None = None) -> list[DeployRecord]:
        with read_transaction(self.engine) as conn:
            query = sa.select(deploys).where(deploys.c.environment == environment)
            if state is not None:
                query = query.where(deploys.c.state == state.value)
            rows = conn.execute(query.order_by(deploys.c.id))
            return [_deploy(row._mapping) for row in rows]

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

    def record(
        self, kind: EventKind, environment: str, actor: str | None = None, **data: Any
    ) -> None:
        """An event about an environment that changes no projection (smoke, replicas)."""
        now = time.time()
        with write_transaction(self.engine) as conn:
            payload = {"environment": environment, **data}
            event_log.append(conn, [event_log.event_row(kind, now, actor=actor, data=payload)])

    # --- history, from the event log --------------------------------------------------

    def events(self, environment: str, kinds: Sequence[EventKind] = ()) -> list[EventRecord]:
        wanted = [kind.value for kind in kinds] or [kind.value for kind in _ENVIRONMENT_EVENTS]
        with read_transaction(self.engine) as conn:
            query = (
                sa.select(events)
                .where(
                    events.c.kind.in_(wanted),
                    events.c.data["environment"].as_string() == environment,
                )
                .order_by(events.c.id)
            )
            return [event_log.event_from_row(row._mapping) for row in conn.execute(query)]

    def history(self, environment: str) -> list[HistoryEntry]:
        """Deploys and rollbacks (a flag's kill switch included), oldest first, folded from
        the event log."""
        kinds = (
            EventKind.DEPLOY_STARTED,
            EventKind.DEPLOY_FINISHED,
            EventKind.ROLLBACK,
            EventKind.FLAG_KILLED,
        )
        entries: list[HistoryEntry] = []
        by_deploy: dict[int, int] = {}
        for event in self.events(environment, kinds):
            data = event.data
            if event.kind == EventKind.DEPLOY_STARTED:
                by_deploy[int(data["deploy_id"])] = len(entries)
                entries.append(_started_entry(environment, event))
            elif event.kind == EventKind.DEPLOY_FINISHED:
                index = by_deploy.get(int(data["deploy_id"]))
                if index is not None:
                    entries[index] = _finished_entry(entries[index], event)
            elif event.kind == EventKind.FLAG_KILLED:
                entries.append(_flag_kill_entry(environment, event))
            else:
                entries.append(_rollback_entry(environment, event))
        return entries

    # --- golden signals ---------------------------------------------------------------

    def add_samples(self, rows: Sequence[SampleRow]) -> None:
        if not rows:
            return
        with write_transaction(self.engine) as conn:
            conn.execute(
                sa.insert(signal_samples),
                [
                    {
                        "environment": row.environment,
                        "release_id": row.release_id,
                        "ts": row.ts,
                        "weight": row.weight,
                        "signals": dict(row.signals),
                        "saturation": dict(row.saturation) if row.saturation else None,
                    }
                    for row in rows
                ],
            )

    def samples(
        self, environment: str, release_id: str | None = None, since: float = 0.0
    ) -> list[SampleRow]:
        with read_transaction(self.engine) as conn:
            query = sa.select(signal_samples).where(
                signal_samples.c.environment == environment, signal_samples.c.ts >= since
            )
            if release_id is not None:
                query = query.where(signal_samples.c.release_id == release_id)
            rows = conn.execute(query.order_by(signal_samples.c.ts, signal_samples.c.id))
            return [
                SampleRow(
                    environment=r.environment,
                    release_id=r.release_id,
                    ts=r.ts,
                    weight=r.weight,
                    signals=r.signals,
                    saturation=r.saturation,
                )
                for r in rows
            ]


_ENVIRONMENT_EVENTS = (
    EventKind.DEPLOY_STARTED,
    EventKind.DEPLOY_FINISHED,
    EventKind.DEPLOY_RESUMED,
    EventKind.TRAFFIC_SHIFTED,
    EventKind.ROLLBACK,
    EventKind.RELEASE_STATE,
    EventKind.REPLICA_EVENT,
    EventKind.SMOKE_RESULT,
    EventKind.RELEASE_STEP,
    EventKind.RELEASE_DECISION,
    EventKind.RELEASE_COMMAND,
    EventKind.FLAG_KILLED,
)


def _generation(conn: sa.Connection, name: str) -> int:
    query = sa.select(environments.c.generation).where(environments.c.name == name)
    value = conn.execute(query).scalar()
    if value is None:
        raise NotFoundError(f"environment {name!r} has never been deployed")
    return int(value)


def _upsert_release(
    conn: sa.Connection,
    *,
    environment: str,
    release_id: str,
    repository: str,
    digest: str,
    ports: Sequence[int],
    now: float,
) -> None:
    found = conn.execute(
        sa.select(releases.c.release_id).where(releases.c.release_id == release_id)
    )
    values = {"ports": list(ports), "state": ReleaseState.STARTING.value, "updated_at": now}
    if found.first() is None:
        row = {
            "release_id": release_id,
            "environment": environment,
            "repository": repository,
            "digest": digest,
            "created_at": now,
            **values,
        }
        conn.execute(sa.insert(releases).values(row))
    else:
        conn.execute(sa.update(releases).where(releases.c.release_id == release_id).values(values))


def _set_release_state(
    conn: sa.Connection,
    environment: str,
    release_id: str,
    state: ReleaseState,
    *,
    now: float,
    actor: str | None,
) -> None:
    query = sa.select(releases.c.state).where(releases.c.release_id == release_id)
    old = conn.execute(query).scalar()
    if old is None or old == state.value:
        return
    conn.execute(
        sa.update(releases)
        .where(releases.c.release_id == release_id)
        .values(state=state.value, updated_at=now)
    )
    data = {"environment": environment, "release": release_id, "from": old}
    row = event_log.event_row(EventKind.RELEASE_STATE, now, state=state, actor=actor, data=data)
    event_log.append(conn, [row])


def _select_deploy(conn: sa.Connection, deploy_id: int) -> sa.RowMapping:
    row = conn.execute(sa.select(deploys).where(deploys.c.id == deploy_id)).first()
    if row is None:
        raise NotFoundError(f"deploy {deploy_id} does not exist")
    return row._mapping


def _environment(row: sa.RowMapping) -> EnvironmentRecord:
    return EnvironmentRecord(
        name=row["name"],
        port=row["port"],
        admin_port=row["admin_port"],
        live_release=row["live_release"],
        warm_release=row["warm_release"],
        routes=row["routes"],
        generation=row["generation"],
        updated_at=row["updated_at"],
    )


def _release(row: sa.RowMapping) -> ReleaseRecord:
    return ReleaseRecord(
        release_id=row["release_id"],
        environment=row["environment"],
        repository=row["repository"],
        digest=row["digest"],
        ports=tuple(row["ports"]),
        state=ReleaseState(row["state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


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


def _started_entry(environment: str, event: EventRecord) -> HistoryEntry:
    return HistoryEntry(
        kind="deploy",
        environment=environment,
        release_id=str(event.data["release"]),
        digest=event.data.get("digest"),
        actor=event.actor,
        started_at=event.ts,
        finished_at=None,
        result=DeployState.IN_PROGRESS.value,
        reason=None,
        deploy_id=int(event.data["deploy_id"]),
    )


def _finished_entry(entry: HistoryEntry, event: EventRecord) -> HistoryEntry:
    return replace(
        entry,
        finished_at=event.ts,
        result=event.state or DeployState.FAILED.value,
        reason=event.data.get("reason"),
    )


def _rollback_entry(environment: str, event: EventRecord) -> HistoryEntry:
    return HistoryEntry(
        kind="rollback",
        environment=environment,
        release_id=str(event.data.get("to")),
        digest=event.data.get("digest"),
        actor=event.actor,
        started_at=event.ts,
        finished_at=event.ts,
        result="switched",
        reason=event.data.get("reason"),
        deploy_id=None,
    )


def _flag_kill_entry(environment: str, event: EventRecord) -> HistoryEntry:
    """A kill switch is a rollback of a feature, not of a release."""
    return HistoryEntry(
        kind="flag-kill",
        environment=environment,
        release_id=f"flag:{event.data.get('flag')}",
        digest=None,
        actor=event.actor,
        started_at=event.ts,
        finished_at=event.ts,
        result="killed",
        reason=event.data.get("reason"),
        deploy_id=None,
    )
