"""Every webhook delivery the server received and what became of it (`webhook_deliveries`,
plus a `webhook.delivery` event for the live stream), and the replay check: a delivery id
a forge already had handled is dropped."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from conveyor.store import events as event_log
from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.records import EventKind
from conveyor.store.schema import webhook_deliveries


class DeliveryOutcome(StrEnum):
    QUEUED = "queued"  # a run was queued
    IGNORED = "ignored"  # verified, but asks for no run (a tag, a deletion, another repo)
    DUPLICATE = "duplicate"  # a delivery id already handled: a replay or a redelivery
    UNAUTHORIZED = "unauthorized"  # unsigned or wrongly signed
    MALFORMED = "malformed"  # signed, but not a payload the forge documents
    TOO_LARGE = "too_large"
    FAILED = "failed"  # verified, but the commit could not be fetched: a redelivery may work


# A delivery id counts as handled only after one of these; an unsigned request cannot
# spend a real delivery's id, and a failed fetch may be delivered again.
HANDLED = (DeliveryOutcome.QUEUED.value, DeliveryOutcome.IGNORED.value)


@dataclass(frozen=True)
class NewDelivery:
    forge: str
    delivery_id: str | None
    event: str | None
    outcome: DeliveryOutcome
    status_code: int
    reason: str | None
    queue_id: int | None = None


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    forge: str
    delivery_id: str | None
    received_at: float
    event: str | None
    outcome: DeliveryOutcome
    status_code: int
    reason: str | None
    queue_id: int | None


def record_delivery(engine: sa.Engine, delivery: NewDelivery) -> int:
    now = time.time()
    values: dict[str, Any] = {
        "forge": delivery.forge,
        "delivery_id": delivery.delivery_id,
        "received_at": now,
        "event": delivery.event,
        "outcome": delivery.outcome.value,
        "status_code": delivery.status_code,
        "reason": delivery.reason,
        "queue_id": delivery.queue_id,
    }
    with write_transaction(engine) as conn:
        key = conn.execute(webhook_deliveries.insert().values(values)).inserted_primary_key
        assert key is not None
        values.pop("received_at")
        event_log.append_one(
            conn, event_log.event_row(EventKind.WEBHOOK_DELIVERY, now, data=values)
        )
    return int(key[0])


def handled_before(engine: sa.Engine, forge: str, delivery_id: str) -> DeliveryRecord | None:
    """The earlier delivery of this id that was handled, if any."""
    with read_transaction(engine) as conn:
        row = (
            conn.execute(
                sa.select(webhook_deliveries)
                .where(
                    webhook_deliveries.c.forge == forge,
                    webhook_deliveries.c.delivery_id == delivery_id,
                    webhook_deliveries.c.outcome.in_(HANDLED),
                )
                .order_by(webhook_deliveries.c.id)
                .limit(1)
            )
            .mappings()
            .first()
        )
    return None if row is None else _record(row)


def list_deliveries(
    engine: sa.Engine, *, limit: int, before: int | None = None
) -> list[DeliveryRecord]:
    """Newest first; `before` is the id the previous page ended at (keyset paging)."""
    query = sa.select(webhook_deliveries).order_by(webhook_deliveries.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(webhook_deliveries.c.id < before)
    with read_transaction(engine) as conn:
        return [_record(row) for row in conn.execute(query).mappings()]


def outcome_counts(engine: sa.Engine) -> dict[str, int]:
    """How many deliveries ended in each outcome (every outcome named, 0 included)."""
    column = webhook_deliveries.c.outcome
    with read_transaction(engine) as conn:
        rows = conn.execute(sa.select(column, sa.func.count()).group_by(column)).all()
    counts = {outcome.value: 0 for outcome in DeliveryOutcome}
    counts.update({str(outcome): int(count) for outcome, count in rows})
    return counts


def _record(row: Mapping[str, Any] | sa.RowMapping) -> DeliveryRecord:
    return DeliveryRecord(
        id=row["id"],
        forge=row["forge"],
        delivery_id=row["delivery_id"],
        received_at=row["received_at"],
        event=row["event"],
        outcome=DeliveryOutcome(row["outcome"]),
        status_code=row["status_code"],
        reason=row["reason"],
        queue_id=row["queue_id"],
    )


def queued_before(
    engine: sa.Engine, commit_sha: str, branch: str, trigger: Mapping[str, Any]
) -> int | None:
    """The queue entry an earlier delivery made for this very event (the same forge, kind,
    commit, branch and merge request), if any: a captured body sent again under a new
    delivery id (which no forge's signature covers) is a replay all the same."""
    from conveyor.store.schema import run_queue

    keys = ("forge", "kind", "merge_request")
    with read_transaction(engine) as conn:
        rows = conn.execute(
            sa.select(run_queue.c.id, run_queue.c.trigger).where(
                run_queue.c.commit_sha == commit_sha, run_queue.c.branch == branch
            )
        ).all()
    for queue_id, earlier in rows:
        if all((earlier or {}).get(key) == trigger.get(key) for key in keys):
            return int(queue_id)
    return None
