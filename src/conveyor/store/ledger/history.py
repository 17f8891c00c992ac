"""An environment's events, and its deploy and rollback history folded from them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from conveyor.states import DeployState
from conveyor.store import events as event_log
from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.records import EventKind, EventRecord
from conveyor.store.schema import events


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


ENVIRONMENT_EVENTS = (
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
    EventKind.RELEASE_HOOK,
    EventKind.FLAG_KILLED,
)


class History:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def record(
        self, kind: EventKind, environment: str, actor: str | None = None, **data: Any
    ) -> None:
        """An event about an environment that changes no projection (smoke, replicas)."""
        now = time.time()
        with write_transaction(self.engine) as conn:
            payload = {"environment": environment, **data}
            event_log.append(conn, [event_log.event_row(kind, now, actor=actor, data=payload)])

    def events(
        self, environment: str, kinds: Sequence[EventKind] = (), *, deploy_id: int | None = None
    ) -> list[EventRecord]:
        """The environment's events of `kinds` (default: all of them), oldest first; only
        those of one deploy when `deploy_id` is given (filtered by the database)."""
        wanted = [kind.value for kind in kinds or ENVIRONMENT_EVENTS]
        query = sa.select(events).where(
            events.c.kind.in_(wanted),
            events.c.data["environment"].as_string() == environment,
        )
        if deploy_id is not None:
            query = query.where(events.c.data["deploy_id"].as_integer() == deploy_id)
        with read_transaction(self.engine) as conn:
            rows = conn.execute(query.order_by(events.c.id))
            return [event_log.event_from_row(row._mapping) for row in rows]

    def entries(self, environment: str) -> list[HistoryEntry]:
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
