"""Concurrency-group locks shared by every Conveyor process on the same database.

A group is a FIFO queue of tickets: a ticket holds the lock when no ticket of its group
holds it and it is the oldest queued one. Tickets of processes that died are released
before anyone decides, so a crashed run never blocks its group. Functions take a
connection inside the caller's write transaction, which makes check-then-acquire atomic.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa

from conveyor.errors import InfrastructureError
from conveyor.store import events
from conveyor.store.db import serialize_on
from conveyor.store.procs import ProcessIdentity, is_dead_here
from conveyor.store.records import EventKind, LockState, LockTicket
from conveyor.store.schema import lock_tickets

DEAD_HOLDER_ACTOR = "conveyor"  # who releases the tickets of a process that died
_ACTIVE_STATES = [LockState.QUEUED.value, LockState.HOLDING.value]


def enqueue(
    conn: sa.Connection,
    group: str,
    run_id: int,
    job_id: str,
    *,
    supersede: bool,
    owner: ProcessIdentity,
    now: float,
) -> LockTicket:
    serialize_on(conn, lock_tickets)
    superseded = _supersede_other_runs(conn, group, run_id, now) if supersede else ()
    ticket_id = conn.execute(
        sa.insert(lock_tickets)
        .values(
            group_name=group,
            run_id=run_id,
            job_id=job_id,
            state=LockState.QUEUED.value,
            pid=owner.pid,
            host=owner.host,
            pid_started=owner.started,
            created_at=now,
        )
        .returning(lock_tickets.c.id)
    ).scalar_one()
    queued = _select_ticket(conn, ticket_id)
    _record(conn, EventKind.LOCK_QUEUED, queued, LockState.QUEUED, now)
    _try_acquire(conn, queued, now)
    return dataclasses.replace(_select_ticket(conn, ticket_id), superseded=superseded)


def peek(conn: sa.Connection, ticket_id: int) -> LockState | None:
    """The ticket's state if a plain read shows it cannot change now, else None.

    Lets a waiting ticket poll without taking the write lock while live tickets are ahead.
    """
    ticket = _select_ticket(conn, ticket_id)
    if ticket.state is not LockState.QUEUED:
        return ticket.state
    ahead = _ahead_of(ticket, _active_tickets(conn, ticket.group))
    if not ahead or any(_owner_dead(other) for other in ahead):
        return None  # it may acquire, or dead tickets must be released: needs a write
    return LockState.QUEUED


def poll(conn: sa.Connection, ticket_id: int, now: float) -> LockState:
    serialize_on(conn, lock_tickets)
    return _try_acquire(conn, _select_ticket(conn, ticket_id), now)


def release(conn: sa.Connection, ticket_id: int, now: float) -> None:
    ticket = _select_ticket(conn, ticket_id)
    if ticket.state in (LockState.QUEUED, LockState.HOLDING):
        _set_state(conn, ticket, LockState.RELEASED, EventKind.LOCK_RELEASED, now)


def release_run(conn: sa.Connection, run_id: int, *, actor: str, reason: str, now: float) -> None:
    """Release every ticket a run still holds or waits on."""
    rows = conn.execute(
        sa.select(lock_tickets).where(
            lock_tickets.c.run_id == run_id, lock_tickets.c.state.in_(_ACTIVE_STATES)
        )
    )
    for row in list(rows):
        ticket = _ticket_from_row(row._mapping)
        _set_state(
            conn,
            ticket,
            LockState.RELEASED,
            EventKind.LOCK_RELEASED,
            now,
            actor=actor,
            reason=reason,
        )


def _try_acquire(conn: sa.Connection, ticket: LockTicket, now: float) -> LockState:
    if ticket.state is not LockState.QUEUED:
        return ticket.state
    live = [
        other
        for other in _active_tickets(conn, ticket.group)
        if not _released_because_dead(conn, other, now)
    ]
    if ticket.id not in {other.id for other in live}:  # its own process died
        return LockState.RELEASED
    if _ahead_of(ticket, live):
        return LockState.QUEUED
    _set_state(conn, ticket, LockState.HOLDING, EventKind.LOCK_ACQUIRED, now)
    return LockState.HOLDING


def _active_tickets(conn: sa.Connection, group: str) -> list[LockTicket]:
    rows = conn.execute(
        sa.select(lock_tickets)
        .where(lock_tickets.c.group_name == group, lock_tickets.c.state.in_(_ACTIVE_STATES))
        .order_by(lock_tickets.c.id)
    )
    return [_ticket_from_row(row._mapping) for row in rows]


def _ahead_of(ticket: LockTicket, active: list[LockTicket]) -> list[LockTicket]:
    """Tickets that must be released before `ticket` may hold: the holder and older waiters."""
    return [
        other
        for other in active
        if other.id != ticket.id and (other.state is LockState.HOLDING or other.id < ticket.id)
    ]


def _released_because_dead(conn: sa.Connection, ticket: LockTicket, now: float) -> bool:
    if not _owner_dead(ticket):
        return False
    _set_state(
        conn,
        ticket,
        LockState.RELEASED,
        EventKind.LOCK_RELEASED,
        now,
        actor=DEAD_HOLDER_ACTOR,
        reason="its conveyor process died",
    )
    return True


def _owner_dead(ticket: LockTicket) -> bool:
    return is_dead_here(ticket.pid, ticket.host, ticket.pid_started)


def _supersede_other_runs(
    conn: sa.Connection, group: str, run_id: int, now: float
) -> tuple[LockTicket, ...]:
    rows = conn.execute(
        sa.select(lock_tickets)
        .where(
            lock_tickets.c.group_name == group,
            lock_tickets.c.state == LockState.QUEUED.value,
            lock_tickets.c.run_id != run_id,
        )
        .order_by(lock_tickets.c.id)
    )
    superseded = []
    for row in list(rows):
        ticket = _ticket_from_row(row._mapping)
        _set_state(
            conn, ticket, LockState.SUPERSEDED, EventKind.LOCK_SUPERSEDED, now, by_run=run_id
        )
        superseded.append(dataclasses.replace(ticket, state=LockState.SUPERSEDED))
    return tuple(superseded)


def _set_state(
    conn: sa.Connection,
    ticket: LockTicket,
    state: LockState,
    kind: EventKind,
    now: float,
    *,
    actor: str | None = None,
    **data: Any,
) -> None:
    conn.execute(
        sa.update(lock_tickets).where(lock_tickets.c.id == ticket.id).values(state=state.value)
    )
    _record(conn, kind, ticket, state, now, actor=actor, **data)


def _record(
    conn: sa.Connection,
    kind: EventKind,
    ticket: LockTicket,
    state: LockState,
    now: float,
    *,
    actor: str | None = None,
    **data: Any,
) -> None:
    event = events.event_row(
        kind,
        now,
        run_id=ticket.run_id,
        job_id=ticket.job_id,
        state=state,
        actor=actor,
        data={"group": ticket.group, "ticket": ticket.id, **data},
    )
    events.append(conn, [event])


def _select_ticket(conn: sa.Connection, ticket_id: int) -> LockTicket:
    row = conn.execute(sa.select(lock_tickets).where(lock_tickets.c.id == ticket_id)).first()
    if row is None:
        raise InfrastructureError(f"lock ticket {ticket_id} does not exist")
    return _ticket_from_row(row._mapping)


def _ticket_from_row(row: sa.RowMapping) -> LockTicket:
    return LockTicket(
        id=row["id"],
        group=row["group_name"],
        run_id=row["run_id"],
        job_id=row["job_id"],
        state=LockState(row["state"]),
        pid=row["pid"],
        host=row["host"],
        created_at=row["created_at"],
        pid_started=row["pid_started"],
    )
