"""The run list for people: newest first, filtered, paged by id (keyset) both ways.

A page is read with `id < before` (older) or `id > after` (newer) and the filters, never
with OFFSET: page 500 costs what page 1 costs, and runs started while someone pages do
not shift what they see. The two cursors of a page are plain run ids. The query is the
store's (`Store.list_runs`), as for the API's pages (run_pages.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from conveyor.service.run_pages import run_state
from conveyor.states import RunState
from conveyor.store.db import read_transaction
from conveyor.store.records import RunRecord
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
        prefix = (commit or "").strip().lower() or None
        return cls(branch or None, run_state(status), prefix, pipeline or None)


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
    found = _runs(
        store, filters, limit + 1, before=None if after is not None else before, after=after
    )
    more = len(found) > limit
    found = found[:limit]
    if after is not None:
        found.reverse()
    if not found:
        return RunPage([], None, None)
    if after is not None:
        newer_exists = more
        older_exists = bool(_runs(store, filters, 1, before=found[-1].id))
    else:
        older_exists = more
        newer_exists = before is not None and bool(_runs(store, filters, 1, after=found[0].id))
    return RunPage(
        found,
        older=found[-1].id if older_exists else None,
        newer=found[0].id if newer_exists else None,
    )


def _runs(
    store: Store,
    filters: RunFilters,
    limit: int,
    *,
    before: int | None = None,
    after: int | None = None,
) -> list[RunRecord]:
    return store.list_runs(
        limit,
        pipeline=filters.pipeline,
        branch=filters.branch,
        state=filters.status,
        before_id=before,
        after_id=after,
        commit_prefix=filters.commit,
    )


def pipelines(store: Store) -> list[str]:
    """The pipelines runs were recorded for (the filter's choices)."""
    with read_transaction(store.engine) as conn:
        query = sa.select(runs.c.pipeline).distinct().order_by(runs.c.pipeline)
        return [str(name) for name in conn.execute(query).scalars()]
