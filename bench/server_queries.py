"""The runs API with 10,000 runs and 200,000 jobs in the store: p50/p95 server time.

Fills a new store quickly (bulk inserts through SQLAlchemy Core into `runs`, `jobs` and
`events`, the row shapes of store/runs.py insert_run), starts the real server (uvicorn on
127.0.0.1, in a thread of this process) and times, interleaved round by round:

    GET /api/v1/runs                         the first page (50 runs)
    GET /api/v1/runs?branch=...              a feature branch's runs
    GET /api/v1/runs?status=failed           a run state's runs
    GET /api/v1/runs?cursor=...              a page 150 pages deep (keyset: no OFFSET)
    GET /api/v1/runs/{id}                    a run and its 20 jobs

Server time is measured by a middleware around the app (the request in, the response's
last byte out), the figure the issue's goal names; the client's wall time is shown beside.
Each request is timed twice, interleaved: with the bearer token checked as the server
does today (a scrypt hash per request, ~45 ms of CPU here: `whoami` does nothing else),
and with the caller already known (the auth dependency overridden: what a browser session
or a cache of verified tokens would cost), which is the API's own time.
Goals (issue 15): p95 <= 100 ms for the lists, <= 150 ms for a run.

    .venv/bin/python bench/server_queries.py --repeat 200
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from rich.table import Table

from common import Figure, console, header, print_figures, repeat_parser
from conveyor.approvals.users import add_user, issue_token
from conveyor.server.app import create_app
from conveyor.server.auth import Principal, current_principal
from conveyor.server.context import ServerContext
from conveyor.service.project import Project
from conveyor.store import schema
from conveyor.store.db import write_transaction

RUNS = 10_000
JOBS_PER_RUN = 20
BRANCHES = ["main"] * 10 + [f"feature-{n}" for n in range(200)]
STATES = ["success"] * 16 + ["failed"] * 3 + ["cancelled"]
LIST_GOAL_MS = 100.0
RUN_GOAL_MS = 150.0


def fill(context: ServerContext, rng: random.Random) -> None:
    """10,000 runs of 20 jobs each, with a run.created and a job.state event per row."""
    now = time.time() - RUNS * 60
    run_rows, job_rows, event_rows = [], [], []
    for run_id in range(1, RUNS + 1):
        started = now + run_id * 60
        sha = f"{rng.getrandbits(160):040x}"
        run_rows.append(_run(run_id, started, sha, rng))
        event_rows.append(_event("run.created", started, run_id, None, "running", sha))
        for ordinal in range(JOBS_PER_RUN):
            job_rows.append(_job(run_id, ordinal, started))
            job_id = f"job-{ordinal}"
            event_rows.append(_event("job.state", started + 1, run_id, job_id, "success", sha))
    with write_transaction(context.store.engine) as conn:
        conn.execute(sa.insert(schema.runs), run_rows)
        conn.execute(sa.insert(schema.jobs), job_rows)
        conn.execute(sa.insert(schema.events), event_rows)
    with context.store.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")


def _run(run_id: int, started: float, sha: str, rng: random.Random) -> dict[str, Any]:
    return {
        "id": run_id,
        "pipeline": "shop" if run_id % 4 else "docs",
        "state": rng.choice(STATES),
        "commit_sha": sha,
        "branch": rng.choice(BRANCHES),
        "tag": None,
        "author": "Ann Author <ann@example.org>",
        "message": f"change {run_id}",
        "committed_at": started - 30,
        "actor": "ann",
        "trigger": {"kind": "push"},
        "parallelism": 4,
        "started_at": started,
        "finished_at": started + 45,
        "pid": None,
        "host": None,
        "pid_started": None,
        "workspace": None,
    }


def _job(run_id: int, ordinal: int, started: float) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "job_id": f"job-{ordinal}",
        "ordinal": ordinal,
        "name": f"job-{ordinal}",
        "matrix": {},
        "state": "success" if ordinal % 3 else "cached",
        "plan_status": "included",
        "reason": "always runs (no if/rules)",
        "needs": [f"job-{ordinal - 1}"] if ordinal else [],
        "attempts": 1,
        "exit_code": 0,
        "failure": None,
        "detail": None if ordinal % 3 else "cache hit: outputs of run 1 restored",
        "started_at": started + ordinal,
        "finished_at": started + ordinal + 1,
        "cache_key": f"{ordinal:064x}",
        "log_blob": None,
        "outputs_blob": None,
    }


def _event(
    kind: str, ts: float, run_id: int, job_id: str | None, state: str, sha: str
) -> dict[str, Any]:
    return {
        "ts": ts,
        "kind": kind,
        "run_id": run_id,
        "job_id": job_id,
        "state": state,
        "commit_sha": sha,
        "actor": "ann",
        "data": {},
    }


class ServerTimes:
    """An ASGI middleware keeping each request's server time (ms) by path and query."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.last_ms = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        await self.app(scope, receive, send)
        self.last_ms = (time.perf_counter() - start) * 1000


@contextmanager
def serving(app: Any) -> Iterator[str]:
    import socket

    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
        listener.close()


def deep_cursor(client: httpx.Client, pages: int) -> str:
    cursor = None
    for _ in range(pages):
        params: dict[str, str] = {"cursor": cursor} if cursor else {}
        cursor = client.get("/api/v1/runs", params=params).json()["next_cursor"]
    assert cursor
    return str(cursor)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> int:
    args = repeat_parser(__doc__.splitlines()[0]).parse_args()
    header("the runs API with 10,000 runs and 200,000 jobs")
    rng = random.Random(15)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "conveyor.yml").write_text("version: 1\nname: shop\njobs: {}\n")
        project = Project.locate(Path(tmp) / "conveyor.yml")
        context = ServerContext.open(project, "http://127.0.0.1")
        began = time.perf_counter()
        fill(context, rng)
        console.print(f"filled the store in {time.perf_counter() - began:.1f} s")
        add_user(context.users_file, "bench", "bench@example.org", ["viewer"], [])
        token = issue_token(context.users_file, "bench", None, datetime.now(UTC)).token
        app = create_app(context)
        timed = ServerTimes(app)
        with (
            serving(timed) as url,
            httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as client,
        ):
            figures = measure(client, timed, app, args.repeat)
        context.close()
    print_figures("server time, p95 (ms)", figures)
    return 0 if all(figure.verdict != "MISSED" for figure in figures) else 1


def _known_caller() -> Principal:
    return Principal(name="bench", roles=frozenset({"viewer"}), via="session")


# Each request is timed twice, interleaved: with the bearer token checked as today (scrypt
# for every request), and with the caller already known (what a browser session or a
# cache of verified tokens costs): the second is the API's own time.
MODES = ("token", "caller known")


def measure(client: httpx.Client, timed: ServerTimes, app: FastAPI, repeat: int) -> list[Figure]:
    queries: dict[str, tuple[str, dict[str, str]]] = {
        "first page": ("/api/v1/runs", {}),
        "branch filter": ("/api/v1/runs", {"branch": "feature-7"}),
        "status filter": ("/api/v1/runs", {"status": "failed"}),
        "commit filter": ("/api/v1/runs", {"commit": "a1b2"}),
        "pipeline filter": ("/api/v1/runs", {"pipeline": "docs"}),
        "page 150 (cursor)": ("/api/v1/runs", {"cursor": deep_cursor(client, 150)}),
        "a run and 20 jobs": (f"/api/v1/runs/{RUNS // 2}", {}),
        "whoami": ("/api/v1/whoami", {}),
    }
    server: dict[tuple[str, str], list[float]] = {(n, m): [] for n in queries for m in MODES}
    for path, params in queries.values():  # warm-up
        client.get(path, params=params).raise_for_status()
    for _ in range(repeat):
        for mode in MODES:
            if mode == "token":
                app.dependency_overrides.pop(current_principal, None)
            else:
                app.dependency_overrides[current_principal] = _known_caller
            for name, (path, params) in queries.items():
                client.get(path, params=params).raise_for_status()
                server[name, mode].append(timed.last_ms)
    app.dependency_overrides.clear()
    table = Table(box=None, pad_edge=False)
    for column in ("request", "token p50", "token p95", "caller known p50", "caller known p95"):
        table.add_column(column, justify="left" if column == "request" else "right")
    for name in queries:
        cells = [f"{f(server[name, mode]):.1f}" for mode in MODES for f in (statistics.median, p95)]
        table.add_row(name, *cells)
    console.print("server time, ms, n = " + str(repeat))
    console.print(table)
    return [
        Figure(f"{name} ({mode})", p95(server[name, mode]), "ms", _goal(name))
        for mode in MODES
        for name in queries
        if name != "whoami"
    ]


def _goal(name: str) -> float:
    return RUN_GOAL_MS if name.startswith("a run") else LIST_GOAL_MS


if __name__ == "__main__":
    sys.exit(main())
