"""Fill a store with many finished runs at once (plain bulk INSERTs, no events): for the
runs list's paging test and bench/ui_pages.py. Each run has `jobs_per_run` jobs in a
chain of layers, so a run page has a graph to draw."""

from __future__ import annotations

import sqlalchemy as sa

from conveyor.store.db import write_transaction
from conveyor.store.schema import jobs, runs
from conveyor.store.store import Store

BRANCHES = ("main", "develop", "feature/a", "feature/b")
STATES = ("success", "success", "success", "failed", "cancelled")
BATCH = 500


def fill(store: Store, count: int, jobs_per_run: int = 20, start: float = 1.7e9) -> list[int]:
    """Insert `count` runs; returns their ids, oldest first."""
    ids: list[int] = []
    for first in range(0, count, BATCH):
        with write_transaction(store.engine) as conn:
            batch = range(first, min(count, first + BATCH))
            rows = [_run(n, start) for n in batch]
            new = conn.execute(sa.insert(runs).returning(runs.c.id), rows).scalars().all()
            ids.extend(new)
            job_rows = [
                _job(run_id, index, jobs_per_run, start + n * 60)
                for run_id, n in zip(new, batch, strict=True)
                for index in range(jobs_per_run)
            ]
            if job_rows:
                conn.execute(sa.insert(jobs), job_rows)
    return ids


def _run(n: int, start: float) -> dict[str, object]:
    return {
        "pipeline": "ci" if n % 7 else "nightly",
        "state": STATES[n % len(STATES)],
        "commit_sha": f"{n:08x}" + "ab" * 16,
        "branch": BRANCHES[n % len(BRANCHES)],
        "author": "Ana <ana@example.org>",
        "message": f"change number {n}",
        "actor": "ana",
        "trigger": {"kind": "push"},
        "parallelism": 2,
        "started_at": start + n * 60,
        "finished_at": start + n * 60 + 42,
    }


def _job(run_id: int, index: int, total: int, started: float) -> dict[str, object]:
    width = 4
    layer = index // width
    needs = [f"job-{p:02d}" for p in range((layer - 1) * width, layer * width)] if layer else []
    return {
        "run_id": run_id,
        "job_id": f"job-{index:02d}",
        "ordinal": index,
        "name": f"job-{index:02d}",
        "matrix": {},
        "state": "success" if index % 9 else "cached",
        "plan_status": "included",
        "reason": "inputs changed: src/app.py",
        "needs": needs[: min(2, len(needs))] if index % 2 else needs,
        "attempts": 1,
        "detail": "ran in 1.2s; cache missed: inputs changed",
        "started_at": started + layer,
        "finished_at": started + layer + 1.2,
        "cache_key": f"{index:064x}",
    }
