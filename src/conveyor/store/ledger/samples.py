"""The golden signals sampled per release (`env watch` writes a row per second per
release), and their retention: every sample for a while, then one per interval, then none.

Samples hold cumulative counters, so keeping the last sample of each interval keeps rates
between kept samples exact; only their time resolution coarsens. Saturation is a gauge:
the kept value is the interval's last.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.schema import environments, signal_samples

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class SampleRow:
    environment: str
    release_id: str
    ts: float
    weight: int
    signals: Mapping[str, Any]
    saturation: Mapping[str, Any] | None


@dataclass(frozen=True)
class Retention:
    """Every sample younger than `full`; older ones, the last of each `every` seconds per
    release; none older than `keep`. Checked at most once per `check_every` per process."""

    full: float = 6 * HOUR
    every: int = 60
    keep: float = 30 * DAY
    check_every: float = 300.0

    def __post_init__(self) -> None:
        if not (0 < self.full <= self.keep and self.every >= 1):
            raise ValueError("retention needs 0 < full <= keep and every >= 1 second")


@dataclass(frozen=True)
class Pruned:
    downsampled: int  # older than `full`, deleted: not the last of their interval
    dropped: int  # older than `keep`, deleted


class Samples:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._retention: dict[str, Retention] = {}
        self._checked_at: dict[str, float] = {}

    def retain(self, environment: str, retention: Retention) -> None:
        """Prune this environment's samples per `retention` (else the defaults)."""
        self._retention[environment] = retention

    def add(self, rows: Sequence[SampleRow]) -> None:
        """Record samples; the environments' old samples are pruned when a check is due."""
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
        now = time.time()
        for environment in sorted({row.environment for row in rows}):
            retention = self._retention.get(environment, Retention())
            if now - self._checked_at.get(environment, -retention.check_every) >= (
                retention.check_every
            ):
                self.prune(environment, retention, now)

    def prune(self, environment: str, retention: Retention, now: float) -> Pruned:
        """Apply `retention` to `environment`'s samples as of `now`. Only samples that aged
        since the last prune are read (`environments.samples_pruned_before`)."""
        self._checked_at[environment] = now
        table = signal_samples
        # Interval-aligned, so an interval is never half pruned by one check, half by the next.
        full_before = (now - retention.full) // retention.every * retention.every
        keep_from = now - retention.keep
        with write_transaction(self.engine) as conn:
            pruned_before = conn.execute(
                sa.select(environments.c.samples_pruned_before).where(
                    environments.c.name == environment
                )
            ).scalar()
            dropped = conn.execute(
                sa.delete(table).where(table.c.environment == environment, table.c.ts < keep_from)
            ).rowcount
            aged = sa.and_(
                table.c.environment == environment,
                table.c.ts >= max(keep_from, pruned_before or keep_from),
                table.c.ts < full_before,
            )
            downsampled = conn.execute(
                sa.delete(table).where(aged, table.c.id.not_in(_last_of_intervals(aged, retention)))
            ).rowcount
            conn.execute(
                sa.update(environments)
                .where(environments.c.name == environment)
                .values(samples_pruned_before=max(full_before, pruned_before or full_before))
            )
        return Pruned(downsampled=downsampled, dropped=dropped)

    def of(
        self, environment: str, release_id: str | None = None, since: float = 0.0
    ) -> list[SampleRow]:
        """Oldest first."""
        with read_transaction(self.engine) as conn:
            query = sa.select(signal_samples).where(
                signal_samples.c.environment == environment, signal_samples.c.ts >= since
            )
            if release_id is not None:
                query = query.where(signal_samples.c.release_id == release_id)
            rows = conn.execute(query.order_by(signal_samples.c.ts, signal_samples.c.id))
            return [_sample_row(r) for r in rows]

    def spread(self, environment: str, since: float, count: int) -> list[SampleRow]:
        """At most `count` samples of each release since `since`, evenly spaced among its
        samples (its first and last kept), oldest first: for charts, which need not read
        every sample of hours at one a second. Ids are read first, the rows chosen after."""
        table = signal_samples
        with read_transaction(self.engine) as conn:
            listed = conn.execute(
                sa.select(table.c.id, table.c.release_id)
                .where(table.c.environment == environment, table.c.ts >= since)
                .order_by(table.c.ts, table.c.id)
            )
            by_release: dict[str, list[int]] = {}
            for sample_id, release_id in listed:
                by_release.setdefault(release_id, []).append(sample_id)
            chosen = [i for ids in by_release.values() for i in _evenly(ids, count)]
            rows = conn.execute(
                sa.select(table).where(table.c.id.in_(chosen)).order_by(table.c.ts, table.c.id)
            )
            return [_sample_row(r) for r in rows]


def _evenly(ids: list[int], count: int) -> list[int]:
    if len(ids) <= count:
        return ids
    step = (len(ids) - 1) / (count - 1)
    return [ids[round(index * step)] for index in range(count)]


def _sample_row(r: sa.Row[Any]) -> SampleRow:
    return SampleRow(
        environment=r.environment,
        release_id=r.release_id,
        ts=r.ts,
        weight=r.weight,
        signals=r.signals,
        saturation=r.saturation,
    )


def _last_of_intervals(aged: sa.ColumnElement[bool], retention: Retention) -> sa.ScalarSelect[Any]:
    """The newest sample (largest id: inserted last) of each release and interval."""
    table = signal_samples
    # The interval a sample falls in, in integer arithmetic SQLite and PostgreSQL share.
    interval = sa.cast(table.c.ts, sa.BigInteger) // retention.every
    return (
        sa.select(sa.func.max(table.c.id))
        .where(aged)
        .group_by(table.c.release_id, interval)
        .scalar_subquery()
    )
