"""Flags and segments per environment in the project's store, every change in the event log.

An environment's version is the largest version of its rows: each change takes the next
one, so it only grows and serves as the ETag of the environment's definitions. The change
and its event are written in one transaction; `history` reads the event log back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.flags.model import (
    NAME_PATTERN,
    DefaultStrategy,
    Flag,
    RolloutStrategy,
    Segment,
    Strategy,
)
from conveyor.store import events as event_log
from conveyor.store.db import read_transaction, serialize_on, write_transaction
from conveyor.store.records import EventKind, EventRecord
from conveyor.store.schema import events, flags

FLAG_EVENTS = (EventKind.FLAG_CHANGED, EventKind.FLAG_KILLED)


class DefinitionKind(StrEnum):
    FLAG = "flag"
    SEGMENT = "segment"


class Change(StrEnum):
    """What a flag event did; `killed` is the kill switch (a rollback)."""

    DEFINED = "defined"
    ENABLED = "enabled"
    DISABLED = "disabled"
    ROLLOUT = "rollout"
    KILLED = "killed"


@dataclass(frozen=True)
class FlagRecord:
    environment: str
    flag: Flag
    version: int  # the environment's version when this flag last changed
    updated_at: float


@dataclass(frozen=True)
class SegmentRecord:
    environment: str
    segment: Segment
    version: int
    updated_at: float


@dataclass(frozen=True)
class Snapshot:
    """Everything an evaluator of one environment needs, at one version."""

    environment: str
    version: int  # 0 for an environment without flags
    flags: Mapping[str, FlagRecord] = field(default_factory=dict)
    segments: Mapping[str, SegmentRecord] = field(default_factory=dict)

    def segment_definitions(self) -> dict[str, Segment]:
        return {name: record.segment for name, record in self.segments.items()}


@dataclass(frozen=True)
class KillOutcome:
    record: FlagRecord
    killed: bool  # False when the flag was already off: nothing to roll back


class FlagLedger:
    """Flags over the store's engine; one short transaction per call."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # --- reading ----------------------------------------------------------------------

    def environments(self) -> list[str]:
        with read_transaction(self.engine) as conn:
            query = sa.select(flags.c.environment).distinct().order_by(flags.c.environment)
            return [str(name) for name in conn.execute(query).scalars()]

    def snapshot(self, environment: str) -> Snapshot:
        with read_transaction(self.engine) as conn:
            rows = conn.execute(sa.select(flags).where(flags.c.environment == environment))
            mappings = [row._mapping for row in rows]
        flag_records = {
            row["name"]: _flag_record(row)
            for row in mappings
            if row["kind"] == DefinitionKind.FLAG.value
        }
        segment_records = {
            row["name"]: _segment_record(row)
            for row in mappings
            if row["kind"] == DefinitionKind.SEGMENT.value
        }
        version = max((int(row["version"]) for row in mappings), default=0)
        return Snapshot(environment, version, flag_records, segment_records)

    def flag(self, environment: str, name: str) -> FlagRecord:
        record = self.snapshot(environment).flags.get(name)
        if record is None:
            raise NotFoundError(
                f"no flag {name!r} in {environment}",
                hint=f"`conveyor flags ls {environment}` lists them",
            )
        return record

    def history(self, environment: str, name: str | None = None) -> list[EventRecord]:
        """The environment's flag and segment events (or one flag's), oldest first."""
        wanted = [kind.value for kind in FLAG_EVENTS]
        with read_transaction(self.engine) as conn:
            query = sa.select(events).where(events.c.kind.in_(wanted)).order_by(events.c.id)
            found = [event_log.event_from_row(row._mapping) for row in conn.execute(query)]
        return [
            event
            for event in found
            if event.data.get("environment") == environment
            and (name is None or event.data.get("flag") == name)
        ]

    # --- changing ---------------------------------------------------------------------

    def define(self, environment: str, flag: Flag, actor: str | None = None) -> FlagRecord:
        """Create or replace a flag's whole definition."""
        with write_transaction(self.engine) as conn:
            _check_segments(conn, environment, flag)
            self._write_flag(conn, environment, flag, Change.DEFINED, actor)
        return self.flag(environment, flag.name)

    def set_enabled(
        self, environment: str, name: str, enabled: bool, actor: str | None = None
    ) -> FlagRecord:
        """Turn a flag on or off, keeping its strategies; a new flag is on for everyone."""
        change = Change.ENABLED if enabled else Change.DISABLED
        with write_transaction(self.engine) as conn:
            current = _current_flag(conn, environment, name) or _new_flag(name)
            updated = current.model_copy(update={"enabled": enabled})
            self._write_flag(conn, environment, updated, change, actor)
        return self.flag(environment, name)

    def rollout(
        self,
        environment: str,
        name: str,
        percentage: int,
        *,
        stickiness: str | None = None,
        actor: str | None = None,
    ) -> FlagRecord:
        """Give the flag to `percentage`% of everyone its targeted strategies leave out,
        and turn it on. Targeted strategies (constraints, segments, user lists) stay."""
        if not 0 <= percentage <= 100:
            raise ConveyorError(f"a rollout percentage is 0..100, got {percentage}")
        with write_transaction(self.engine) as conn:
            current = _current_flag(conn, environment, name) or _new_flag(name)
            strategies = _with_rollout(current.strategies, percentage, stickiness)
            updated = current.model_copy(update={"enabled": True, "strategies": strategies})
            self._write_flag(
                conn, environment, updated, Change.ROLLOUT, actor, percentage=percentage
            )
        return self.flag(environment, name)

    def kill(
        self, environment: str, name: str, actor: str | None = None, reason: str | None = None
    ) -> KillOutcome:
        """Turn the flag off at once; recorded as a kill, which counts as a rollback."""
        with write_transaction(self.engine) as conn:
            current = _current_flag(conn, environment, name)
            if current is None:
                raise NotFoundError(f"no flag {name!r} in {environment}")
            killed = current.enabled
            if killed:
                updated = current.model_copy(update={"enabled": False})
                self._write_flag(conn, environment, updated, Change.KILLED, actor, reason=reason)
        return KillOutcome(self.flag(environment, name), killed)

    def define_segment(
        self, environment: str, segment: Segment, actor: str | None = None
    ) -> SegmentRecord:
        with write_transaction(self.engine) as conn:
            definition = segment.model_dump(mode="json")
            kind = DefinitionKind.SEGMENT
            written = _write_row(conn, environment, kind, segment.name, definition)
            data = {
                "environment": environment,
                "segment": segment.name,
                "version": written.version,
                "change": Change.DEFINED,
                "definition": definition,
                "previous": written.definition,
            }
            row = event_log.event_row(EventKind.FLAG_CHANGED, time.time(), actor=actor, data=data)
            event_log.append(conn, [row])
        return self.snapshot(environment).segments[segment.name]

    def _write_flag(
        self,
        conn: sa.Connection,
        environment: str,
        flag: Flag,
        change: Change,
        actor: str | None,
        *,
        percentage: int | None = None,
        reason: str | None = None,
    ) -> None:
        definition = flag.model_dump(mode="json")
        written = _write_row(conn, environment, DefinitionKind.FLAG, flag.name, definition)
        data: dict[str, Any] = {
            "environment": environment,
            "flag": flag.name,
            "version": written.version,
            "change": change,
            "enabled": flag.enabled,
            "definition": definition,
            "previous": written.definition,
        }
        if percentage is not None:
            data["percentage"] = percentage
        kind = EventKind.FLAG_CHANGED
        if change is Change.KILLED:
            kind = EventKind.FLAG_KILLED
            data.update(rollback=True, reason=reason)
        row = event_log.event_row(kind, time.time(), actor=actor, data=data)
        event_log.append(conn, [row])


@dataclass(frozen=True)
class _Written:
    version: int  # the new version
    definition: Mapping[str, Any] | None  # what the row held before


def _write_row(
    conn: sa.Connection,
    environment: str,
    kind: DefinitionKind,
    name: str,
    definition: Mapping[str, Any],
) -> _Written:
    """Insert or update one definition at the environment's next version."""
    serialize_on(conn, flags)  # the next version is read, then written
    latest = conn.execute(
        sa.select(sa.func.max(flags.c.version)).where(flags.c.environment == environment)
    ).scalar()
    version = int(latest or 0) + 1
    key = (
        (flags.c.environment == environment) & (flags.c.kind == kind.value) & (flags.c.name == name)
    )
    previous = conn.execute(sa.select(flags.c.definition).where(key)).scalar()
    values = {"definition": dict(definition), "version": version, "updated_at": time.time()}
    if previous is None:
        row = {"environment": environment, "kind": kind.value, "name": name, **values}
        conn.execute(sa.insert(flags).values(row))
    else:
        conn.execute(sa.update(flags).where(key).values(values))
    return _Written(version, previous)


def _current_flag(conn: sa.Connection, environment: str, name: str) -> Flag | None:
    query = sa.select(flags.c.definition).where(
        flags.c.environment == environment,
        flags.c.kind == DefinitionKind.FLAG.value,
        flags.c.name == name,
    )
    definition = conn.execute(query).scalar()
    return None if definition is None else Flag.model_validate(definition)


def _new_flag(name: str) -> Flag:
    if re.fullmatch(NAME_PATTERN, name) is None:
        raise ConveyorError(
            f"{name!r} is not a flag name",
            hint="letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    return Flag(name=name)


def _check_segments(conn: sa.Connection, environment: str, flag: Flag) -> None:
    wanted = flag.segment_names()
    if not wanted:
        return
    query = sa.select(flags.c.name).where(
        flags.c.environment == environment, flags.c.kind == DefinitionKind.SEGMENT.value
    )
    missing = sorted(wanted - set(conn.execute(query).scalars()))
    if missing:
        raise ConveyorError(
            f"flag {flag.name!r} refers to segments {environment} does not have: "
            + ", ".join(missing),
            hint=f"define them first: `conveyor flags segment {environment} NAME --file ...`",
        )


def _with_rollout(
    strategies: tuple[Strategy, ...], percentage: int, stickiness: str | None
) -> tuple[Strategy, ...]:
    """Targeted strategies stay; an untargeted `default` (everyone) goes; the first
    untargeted rollout takes the new percentage, or a new one is appended."""
    kept: list[Strategy] = []
    replaced = False
    for strategy in strategies:
        if isinstance(strategy, DefaultStrategy) and not strategy.targeted:
            continue
        if isinstance(strategy, RolloutStrategy) and not strategy.targeted and not replaced:
            update: dict[str, Any] = {"percentage": percentage}
            if stickiness:
                update["stickiness"] = stickiness
            kept.append(strategy.model_copy(update=update))
            replaced = True
            continue
        kept.append(strategy)
    if not replaced:
        extra = {"stickiness": stickiness} if stickiness else {}
        kept.append(RolloutStrategy(percentage=percentage, **extra))
    return tuple(kept)


def _flag_record(row: sa.RowMapping) -> FlagRecord:
    return FlagRecord(
        environment=row["environment"],
        flag=Flag.model_validate(row["definition"]),
        version=int(row["version"]),
        updated_at=float(row["updated_at"]),
    )


def _segment_record(row: sa.RowMapping) -> SegmentRecord:
    return SegmentRecord(
        environment=row["environment"],
        segment=Segment.model_validate(row["definition"]),
        version=int(row["version"]),
        updated_at=float(row["updated_at"]),
    )
