"""The run list for people and programs: newest first, filtered, paged by id (keyset).

A page is read with `id < before` (older) or `id > after` (newer) and the filters, never
with OFFSET: page 500 costs what page 1 costs, and runs started while someone pages do
not shift what they see. The two cursors of a page are plain run ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from conveyor.errors import ConveyorError
from conveyor.states import RunState
from conveyor.store.db import read_transaction
from conveyor.store.records import RunRecord
from conveyor.store.runs import _run_from_row
from conveyor.store.schema import runs
from conveyor.store.store import Store

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass(frozen=True)
class RunFilters:
    branch: str | None = None
    status: RunState | None = None
    commit: str | None = None  # a full sha or the start of one
    pipeline: str | None = None

    @classmethod
    def parse(
        cls,
        branch: str | None = None,
        status: str | None = None,
        commit: str | None = None,
        pipeline: str | None = None,
    ) -> RunFilters:
        """From a form or a query string: empty fields mean no filter."""
        state = None
        if status:
            try:
                state = RunState(status)
            except ValueError:
                known = ", ".join(s.value for s in RunState)
                raise ConveyorError(f"no run status {status!r}", hint=f"one of: {known}") from None
        return cls(branch or None, state, (commit or "").strip().lower() or None, pipeline or None)

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        found: list[sa.ColumnElement[bool]] = []
        if self.branch is not None:
            found.append(runs.c.branch == self.branch)
        if self.status is not None:
            found.append(runs.c.state == self.status.value)
        if self.commit is not None:
            found.append(runs.c.commit_sha.startswith(self.commit, autoescape=True))
        if self.pipeline is not None:
            found.append(runs.c.pipeline == self.pipeline)
        return found


@dataclass(frozen=True)
class RunPage:
    runs: list[RunRecord]  # newest first
    older: int | None  # pass as `before` for the next older page; None: this is the last
    newer: int | None  # pass as `after` for the next newer page; None: this is the newest


def run_page(
    store: Store,
    filters: RunFilters = RunFilters(),
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> RunPage:
    """One page of runs matching `filters`: the newest, those older than run `before`, or
    the oldest ones newer than run `after` (still listed newest first)."""
    limit = max(1, min(limit, MAX_LIMIT))
    where = filters.clauses()
    with read_transaction(store.engine) as conn:
        if after is not None:
            query = sa.select(runs).where(runs.c.id > after, *where).order_by(runs.c.id.asc())
        else:
            bound = [runs.c.id < before] if before is not None else []
            query = sa.select(runs).where(*bound, *where).order_by(runs.c.id.desc())
        rows = [_run_from_row(r._mapping) for r in conn.execute(query.limit(limit + 1))]
        more = len(rows) > limit
        rows = rows[:limit]
        if after is not None:
            rows.reverse()
        if not rows:
            return RunPage([], None, None)
        if after is not None:
            newer_exists, older_exists = more, _exists(conn, runs.c.id < rows[-1].id, where)
        else:
            older_exists = more
            newer_exists = before is not None and _exists(conn, runs.c.id > rows[0].id, where)
    return RunPage(
        rows,
        older=rows[-1].id if older_exists else None,
        newer=rows[0].id if newer_exists else None,
    )


def _exists(
    conn: sa.Connection, bound: sa.ColumnElement[bool], where: list[sa.ColumnElement[bool]]
) -> bool:
    probe = sa.select(runs.c.id).where(bound, *where).limit(1)
    return conn.execute(probe).first() is not None


def pipelines(store: Store) -> list[str]:
    """The pipelines runs were recorded for (the filter's choices)."""
    with read_transaction(store.engine) as conn:
        query = sa.select(runs.c.pipeline).distinct().order_by(runs.c.pipeline)
        return [str(name) for name in conn.execute(query).scalars()]
