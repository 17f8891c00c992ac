"""Environments: their persisted ports and what should be serving (the intent)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from conveyor.errors import NotFoundError
from conveyor.states import ReleaseState
from conveyor.store import events as event_log
from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.ledger.releases import change_state
from conveyor.store.records import EventKind
from conveyor.store.schema import environments


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


class Environments:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> EnvironmentRecord | None:
        with read_transaction(self.engine) as conn:
            row = conn.execute(sa.select(environments).where(environments.c.name == name)).first()
        return _environment(row._mapping) if row else None

    def all(self) -> list[EnvironmentRecord]:
        with read_transaction(self.engine) as conn:
            rows = conn.execute(sa.select(environments).order_by(environments.c.name))
            return [_environment(row._mapping) for row in rows]

    def ensure(self, name: str, port: int, admin_port: int) -> EnvironmentRecord:
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
        record = self.get(name)
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
                change_state(conn, name, release_id, state, now=now, actor=actor)
            payload = {"environment": name, "generation": generation, **data}
            event_log.append(conn, [event_log.event_row(event, now, actor=actor, data=payload)])
        return generation

    def generation(self, name: str) -> int:
        with read_transaction(self.engine) as conn:
            return _generation(conn, name)


def _generation(conn: sa.Connection, name: str) -> int:
    query = sa.select(environments.c.generation).where(environments.c.name == name)
    value = conn.execute(query).scalar()
    if value is None:
        raise NotFoundError(f"environment {name!r} has never been deployed")
    return int(value)


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
