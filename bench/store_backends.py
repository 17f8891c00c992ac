"""The store on PostgreSQL against SQLite: engine_vs_make.py's 200-job DAG through `conveyor
run` on each, side by side, and the SQL each job costs.

Each sample is a fresh state: a new SQLite file, or a new PostgreSQL database, created by
the run (tables included) as a first run does. PostgreSQL is a real server started here
(tests/pg_server.py: Debian's postgresql, a unix socket, `synchronous_commit=off`, which
loses the last commits on a crash but never corrupts: what SQLite's WAL with
`synchronous=NORMAL` promises). The statement counts come from SQLAlchemy's events inside
the timed program: every statement it sends, the transactions it opens (pool checkouts)
and the write transactions among them, for 200 no-op jobs and for 1; the difference over
199 is what one job costs.

    .venv/bin/python bench/store_backends.py --repeat 5
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from common import (
    PYTHON,
    Figure,
    Samples,
    alternate,
    console,
    header,
    print_figures,
    print_samples,
    repeat_parser,
    time_command,
)
from engine_vs_make import JOBS, LAYERS, PARALLELISM, SLEEP, WIDTH, Contest, dag, job_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pg_server import DURABLE, PostgresServer, running_server

BACKENDS = ("sqlite", "postgresql")
# `conveyor ARGS` with SQLAlchemy's events counting what reaches the database.
_COUNTING_CONVEYOR = """
import atexit, json, os, sys
import sqlalchemy as sa
from sqlalchemy import event, pool

counts = {"statements": 0, "transactions": 0, "write transactions": 0, "connections": 0}

@event.listens_for(pool.Pool, "connect")
def _connect(*_):
    counts["connections"] += 1

@event.listens_for(sa.engine.Engine, "before_cursor_execute")
def _statement(conn, *_):
    counts["statements"] += 1

@event.listens_for(pool.Pool, "checkout")
def _checkout(*_):
    counts["transactions"] += 1

@event.listens_for(sa.engine.Engine, "commit")
def _commit(conn):
    if conn.get_execution_options().get("conveyor_write"):
        counts["write transactions"] += 1

atexit.register(lambda: open(os.environ["COUNTS_FILE"], "w").write(json.dumps(counts)))
from conveyor.cli.app import main
sys.argv = ["conveyor", *sys.argv[1:]]
main()
"""


class Backends:
    """Runs of one DAG on a fresh state of either backend."""

    def __init__(self, contest: Contest, server: PostgresServer) -> None:
        self.contest = contest
        self.server = server

    def env(self, backend: str) -> dict[str, str]:
        env = self.contest.fresh_state_env()
        if backend == "postgresql":
            env["CONVEYOR_DATABASE_URL"] = self.server.url(self.server.new_database())
        return env

    def timed(self, backend: str) -> Callable[[], float]:
        return lambda: time_command(
            self.contest.conveyor_argv(), cwd=self.contest.repository, env=self.env(backend)
        )

    def counts(self, backend: str) -> dict[str, int]:
        counts_file = Path(self.contest.parent) / f"counts-{backend}.json"
        argv = [PYTHON, "-c", _COUNTING_CONVEYOR, *self.contest.conveyor_argv()[1:]]
        env = {**self.env(backend), "COUNTS_FILE": str(counts_file)}
        time_command(argv, cwd=self.contest.repository, env=env)
        counted: dict[str, int] = json.loads(counts_file.read_text())
        return counted


def compare(command: str, repeat: int, parent: Path, server: PostgresServer) -> dict[str, Samples]:
    """Both backends on the DAG; for no-op jobs also a 1-job run each (the fixed cost: the
    start-up, the first open creating the tables)."""
    backends = Backends(Contest(command, parent / command.split(maxsplit=1)[0], dag()), server)
    contenders = {backend: backends.timed(backend) for backend in BACKENDS}
    if command == "true":
        single = Backends(Contest(command, parent / "single", {job_name(0, 0): []}), server)
        contenders |= {f"{backend}, 1 job": single.timed(backend) for backend in BACKENDS}
    samples = alternate(contenders, repeat)
    title = f"{JOBS} jobs `{command}`, {LAYERS}x{WIDTH} DAG, {PARALLELISM} at a time"
    print_samples(title, list(samples.values()), baseline=samples["sqlite"])
    return samples


def per_job_counts(parent: Path, server: PostgresServer) -> dict[str, dict[str, float]]:
    """What one no-op job sends to each backend: (200 jobs - 1 job) / 199."""
    many = Backends(Contest("true", parent / "count-many", dag()), server)
    one = Backends(Contest("true", parent / "count-one", {job_name(0, 0): []}), server)
    found = {}
    for backend in BACKENDS:
        whole, fixed = many.counts(backend), one.counts(backend)
        found[backend] = {key: (whole[key] - fixed[key]) / (JOBS - 1) for key in whole}
        console.print(f"{backend}: 200-job run {whole}, 1-job run {fixed}")
    return found


def measure(repeat: int) -> list[Figure]:
    header("the store: PostgreSQL vs SQLite, 200-job DAG")
    with running_server(DURABLE) as server, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        scratch = Path(tmp)
        noop = compare("true", repeat, scratch, server)
        sleepy = compare(f"sleep {SLEEP}", repeat, scratch, server)
        counts = per_job_counts(scratch, server)
    figures = [
        Figure(
            "no-op DAG: postgresql / sqlite", noop["postgresql"].median / noop["sqlite"].median, "x"
        ),
        *[
            Figure(
                f"no-op: {backend}, (200 jobs - 1 job) / 199",
                (noop[backend].median - noop[f"{backend}, 1 job"].median) / (JOBS - 1) * 1e3,
                "ms",
            )
            for backend in BACKENDS
        ],
        Figure(
            "no-op: 1-job run, postgresql - sqlite (fixed cost)",
            noop["postgresql, 1 job"].median - noop["sqlite, 1 job"].median,
            "s",
        ),
        Figure(
            "sleep DAG: postgresql / sqlite",
            sleepy["postgresql"].median / sleepy["sqlite"].median,
            "x",
        ),
    ]
    figures += [
        Figure(f"{backend}: {key} / job", value, "")
        for backend, per_job in counts.items()
        for key, value in per_job.items()
    ]
    print_figures("store backends", figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    args = repeat_parser(__doc__ or "").parse_args(argv)
    measure(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
