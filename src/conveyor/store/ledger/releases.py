"""Releases: what was started in an environment (image, ports) and the state it is in."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from conveyor.states import ReleaseState
from conveyor.store import events as event_log
from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.records import EventKind
from conveyor.store.schema import releases


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


class Releases:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get(self, release_id: str, environment: str | None = None) -> ReleaseRecord | None:
        """The release `release_id`; with `environment`, only if it is one of that
        environment's (an id alone may name another environment's release)."""
        with read_transaction(self.engine) as conn:
            query = sa.select(releases).where(releases.c.release_id == release_id)
            if environment is not None:
                query = query.where(releases.c.environment == environment)
            row = conn.execute(query).first()
        return _release(row._mapping) if row else None

    def of_environment(self, environment: str) -> list[ReleaseRecord]:
        with read_transaction(self.engine) as conn:
            query = (
                sa.select(releases)
                .where(releases.c.environment == environment)
                .order_by(releases.c.created_at)
            )
            return [_release(row._mapping) for row in conn.execute(query)]

    def states(self, pairs: Collection[tuple[str, str]]) -> dict[tuple[str, str], ReleaseState]:
        """The state of each (environment, release id) pair the ledger knows, in one read
        (the continuous watch asks for every environment's live release every second)."""
        if not pairs:
            return {}
        with read_transaction(self.engine) as conn:
            query = sa.select(releases.c.environment, releases.c.release_id, releases.c.state)
            rows = conn.execute(query.where(releases.c.release_id.in_({r for _, r in pairs})))
            found = {(row.environment, row.release_id): ReleaseState(row.state) for row in rows}
        return {pair: found[pair] for pair in pairs if pair in found}

    def set_state(
        self, environment: str, release_id: str, state: ReleaseState, actor: str | None = None
    ) -> None:
        with write_transaction(self.engine) as conn:
            change_state(conn, environment, release_id, state, now=time.time(), actor=actor)

    def register(
        self, environment: str, release_id: str, repository: str, digest: str, ports: Sequence[int]
    ) -> None:
        """A release started beside a deploy's own (a canary's baseline)."""
        with write_transaction(self.engine) as conn:
            upsert(
                conn,
                environment=environment,
                release_id=release_id,
                repository=repository,
                digest=digest,
                ports=ports,
                now=time.time(),
            )


def upsert(
    conn: sa.Connection,
    *,
    environment: str,
    release_id: str,
    repository: str,
    digest: str,
    ports: Sequence[int],
    now: float,
) -> None:
    """A release (re)starting: new, or an existing one's ports and STARTING again."""
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


def change_state(
    conn: sa.Connection,
    environment: str,
    release_id: str,
    state: ReleaseState,
    *,
    now: float,
    actor: str | None,
) -> None:
    """A release's new state and its event; nothing when unknown or already in it."""
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
