"""Runs through a running server pay no CLI start-up: the 200-job DAG submitted to
`conveyor server` through the API against `make -j2` and `conveyor run`, side by side;
and a warm rerun of the sample pipeline through the server against the CLI's.

A server run is timed from just before `POST /api/v1/runs` to the moment its queue entry
was finished (the server records it when the run's process ends, `finished_at`), read
back from the store, so how often the script looks does not count. The server and the
CLI use the same Conveyor; the server is started once per part, with one worker, and
is sent one run before timing (its fork server imports the run path once). For the
floor, the same run is also made by `execute_run` inside this script's process: no
start-up, no HTTP, no fork; what is left is the engine's own time (old workspaces are
removed after each of those runs, as the server does, not before its result).

    .venv/bin/python bench/server_vs_make.py --repeat 3 [--timeline]
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import httpx

from common import (
    CONVEYOR,
    Figure,
    Samples,
    alternate,
    clean_env,
    console,
    free_port,
    header,
    print_figures,
    print_samples,
    repeat_parser,
)
from conveyor.approvals.users import add_user, issue_token, users_path
from conveyor.engine.report import SilentReporter
from conveyor.service.project import Project
from conveyor.service.runs import RunOptions, execute_run
from conveyor.states import RunState
from conveyor.store import queue
from conveyor.store.store import Store
from engine_vs_make import IDEAL, JOBS, PARALLELISM, SLEEP, Contest, dag
from warm_rerun import CACHED_OR_UNSELECTED, LAST_CI_JOB, ShopRepository, every_run_jobs

DAG_RATIO_GOAL = 1.05
WARM_GOAL_SECONDS = 0.3
POLL_SECONDS = 0.1
START_TIMEOUT = 60.0
RUN_TIMEOUT = 600.0


@dataclass
class RunningServer:
    """`conveyor server` as a subprocess over a project, with a developer's token."""

    url: str
    token: str
    state_dir: Path
    process: subprocess.Popen[bytes]
    # One client for every request, as a CLI or a forge would keep its connection: making
    # an httpx client (its TLS context) costs the caller 20 to 40 ms, none of it the server's.
    client: httpx.Client

    def submit(self, body: Mapping[str, Any]) -> int:
        answer = self.client.post(
            "/api/v1/runs", json=dict(body), headers={"Authorization": f"Bearer {self.token}"}
        )
        answer.raise_for_status()
        queue_id: int = answer.json()["queue_id"]
        return queue_id

    def wait(self, queue_id: int) -> queue.QueuedRun:
        deadline = time.monotonic() + RUN_TIMEOUT
        with Store(self.state_dir) as store:
            while time.monotonic() < deadline:
                entry = queue.get(store.engine, queue_id)
                if entry is not None and entry.state is queue.QueueState.DONE:
                    return entry
                time.sleep(POLL_SECONDS)
        raise RuntimeError(f"queued run {queue_id} did not finish in {RUN_TIMEOUT} s")

    def run(self, body: Mapping[str, Any]) -> tuple[float, queue.QueuedRun]:
        """Submit, wait; the seconds from the POST to the run's end, and the entry."""
        started = time.time()
        entry = self.wait(self.submit(body))
        if entry.run_id is None or not (entry.reason or "").endswith("success"):
            raise RuntimeError(f"the server's run did not succeed: {entry.reason}")
        assert entry.finished_at is not None
        return entry.finished_at - started, entry


@contextlib.contextmanager
def running_server(
    project_dir: Path, state_dir: Path, env: Mapping[str, str]
) -> Iterator[RunningServer]:
    state_dir.mkdir(parents=True, exist_ok=True)
    users = users_path(state_dir)
    add_user(users, "bench", "bench@example.org", ["developer"], [])
    token = issue_token(users, "bench", None, datetime.now(UTC)).token
    port = free_port()
    process = subprocess.Popen(
        [CONVEYOR, "server", "--port", str(port), "--workers", "1"],
        cwd=project_dir,
        env={**env, "CONVEYOR_STATE_DIR": str(state_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=30.0)
    server = RunningServer(url, token, state_dir, process, client)
    try:
        _wait_healthy(server)
        yield server
    finally:
        client.close()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_healthy(server: RunningServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError("the server exited at start")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("the server did not answer")


def in_process(
    repository: Path, state_dir: Path, env: Mapping[str, str], options: RunOptions
) -> Callable[[], float]:
    """The floor: the same run by `execute_run` in this process (imports already done)."""

    def run() -> float:
        with mock.patch.dict(os.environ, {**env, "CONVEYOR_STATE_DIR": str(state_dir)}):
            project = Project.locate(repository / "conveyor.yml")
            started = time.perf_counter()
            outcome = execute_run(project, options, SilentReporter())
            took = time.perf_counter() - started
        if outcome.state is not RunState.SUCCESS:
            raise RuntimeError(f"the in-process run {outcome.run_id} ended {outcome.state}")
        return took

    return run


# --- the timeline of one server run ---------------------------------------------------


def timeline(state_dir: Path, entry: queue.QueuedRun, posted: float) -> list[tuple[str, float]]:
    """Where a server run's time went: seconds from the POST to each milestone."""
    assert entry.run_id is not None
    with Store(state_dir) as store:
        run = store.get_run(entry.run_id)
        jobs = store.get_jobs(entry.run_id)
    starts = [j.started_at for j in jobs if j.started_at is not None]
    ends = [j.finished_at for j in jobs if j.finished_at is not None]
    marks = [
        ("queued (POST answered)", entry.requested_at),
        ("claimed by the worker pool", entry.claimed_at),
        ("run recorded (planned, in the store)", run.started_at),
        # a job taken from the cache records no start: this is the first one that ran
        ("first job started", min(starts) if starts else None),
        ("last job finished", max(ends) if ends else None),
        ("run finished", run.finished_at),
        ("queue entry finished", entry.finished_at),
    ]
    return [(name, at - posted) for name, at in marks if at is not None]


def print_timeline(title: str, marks: Sequence[tuple[str, float]]) -> None:
    console.print(f"[bold]{title}[/]")
    previous = 0.0
    for name, at in marks:
        console.print(f"  {at * 1e3:9.1f} ms  (+{(at - previous) * 1e3:7.1f})  {name}")
        previous = at


# --- (a) the 200-job DAG ------------------------------------------------------------------


def measure_dag(repeat: int, show_timeline: bool) -> list[Figure]:
    header(f"server vs make: the {JOBS}-job DAG through the API")
    with tempfile.TemporaryDirectory(prefix="bench-server-dag-") as scratch:
        contest = Contest(f"sleep {SLEEP}", Path(scratch) / "sleep", dag())
        body = {"parallelism": PARALLELISM}
        state_dir = Path(scratch) / "server-state"
        # prune=False: the server removes old workspaces after the run, not before its result
        options = RunOptions(parallelism=PARALLELISM, prune=False)
        floor = in_process(contest.repository, state_dir, clean_env(), options)
        with running_server(contest.repository, state_dir, clean_env()) as server:
            server.run(body)  # the fork server imports the run path once
            runs: list[tuple[float, queue.QueuedRun]] = []

            def through_server() -> float:
                posted = time.time()
                took, entry = server.run(body)
                runs.append((posted, entry))
                return took

            samples = alternate(
                {
                    "conveyor server (API)": through_server,
                    "make -j2": contest.make,
                    "conveyor run": contest.conveyor,
                    "execute_run in-process": floor,
                },
                repeat,
            )
            median_run = sorted(runs, key=lambda r: (r[1].finished_at or 0) - r[0])[len(runs) // 2]
            marks = timeline(server.state_dir, median_run[1], median_run[0])
    title = f"{JOBS} jobs `sleep {SLEEP}`, 10x20 DAG, {PARALLELISM} at a time"
    print_samples(title, list(samples.values()), baseline=samples["make -j2"])
    if show_timeline:
        print_timeline("the median server run, from the POST", marks)
    console.print(f"ideal: {JOBS} x {SLEEP} s / {PARALLELISM} = {IDEAL:.1f} s")
    server_s = samples["conveyor server (API)"].median
    make_s = samples["make -j2"].median
    cli_s = samples["conveyor run"].median
    floor_s = samples["execute_run in-process"].median
    figures = [
        Figure("DAG: server median (POST to run finished)", server_s, "s"),
        Figure("DAG: make -j2 median", make_s, "s"),
        Figure("DAG: conveyor run median", cli_s, "s"),
        Figure("DAG: server / make", server_s / make_s, "x", DAG_RATIO_GOAL),
        Figure("DAG: conveyor run / make", cli_s / make_s, "x"),
        Figure("DAG: execute_run in-process / make (floor)", floor_s / make_s, "x"),
        Figure(
            "DAG: server, POST to first job started", dict(marks).get("first job started", 0.0), "s"
        ),
    ]
    print_figures("runs without CLI start-up", figures)
    return figures


# --- (b) warm rerun of the sample pipeline ---------------------------------------------------


class NotCachedError(RuntimeError):
    """A warm rerun executed a job: the measurement is not of a warm rerun."""


def check_warm(state_dir: Path, run_id: int, spec: Path) -> None:
    every_run = every_run_jobs(spec)
    with Store(state_dir) as store:
        jobs = store.get_jobs(run_id)
    not_cached = {
        j.job_id: j.state.value
        for j in jobs
        if j.state.value not in CACHED_OR_UNSELECTED
        and not (j.state.value == "success" and j.job_id in every_run)
    }
    if not_cached or not any(j.state.value == "cached" for j in jobs):
        raise NotCachedError(
            f"warm rerun through the server did not come from the cache: {not_cached}"
        )


def measure_warm(repeat: int, show_timeline: bool) -> list[Figure]:
    header("warm rerun of the sample pipeline through the server")
    with tempfile.TemporaryDirectory(prefix="bench-server-warm-") as scratch:
        shop = ShopRepository(Path(scratch))
        state_dir = shop.repository / ".conveyor"
        body = {"jobs": [LAST_CI_JOB]}
        options = RunOptions(only=(LAST_CI_JOB,), prune=False)
        floor = in_process(shop.repository, state_dir, shop.env, options)
        with running_server(shop.repository, state_dir, shop.env) as server:
            cold, _ = server.run(body)  # fills the cache (and the base image)
            runs: list[tuple[float, queue.QueuedRun]] = []

            def through_server() -> float:
                posted = time.time()
                took, entry = server.run(body)
                assert entry.run_id is not None
                check_warm(state_dir, entry.run_id, shop.repository / "conveyor.yml")
                runs.append((posted, entry))
                return took

            samples = alternate(
                {
                    "warm rerun, server (API)": through_server,
                    "warm rerun, conveyor run": shop.warm_run,
                    "warm rerun, execute_run in-process": floor,
                },
                repeat,
            )
            median_run = sorted(runs, key=lambda r: (r[1].finished_at or 0) - r[0])[len(runs) // 2]
            marks = timeline(state_dir, median_run[1], median_run[0])
    server_s = samples["warm rerun, server (API)"]
    print_samples(
        f"examples/shop up to `{LAST_CI_JOB}`, cached or every-run on rerun",
        [
            Samples("cold run, server (once)", [cold]),
            server_s,
            samples["warm rerun, conveyor run"],
            samples["warm rerun, execute_run in-process"],
        ],
        baseline=server_s,
    )
    if show_timeline:
        print_timeline("the median warm rerun through the server, from the POST", marks)
    figures = [
        Figure("warm rerun: server median", server_s.median, "s", WARM_GOAL_SECONDS),
        Figure("warm rerun: conveyor run median", samples["warm rerun, conveyor run"].median, "s"),
        Figure(
            "warm rerun: execute_run in-process (floor)",
            samples["warm rerun, execute_run in-process"].median,
            "s",
        ),
    ]
    print_figures("warm rerun through the server", figures)
    return figures


def measure(repeat: int) -> list[Figure]:
    return measure_dag(repeat, show_timeline=True) + measure_warm(repeat, show_timeline=True)


def main(argv: list[str] | None = None) -> int:
    parser = repeat_parser(__doc__ or "")
    parser.add_argument(
        "--timeline", action="store_true", help="print where a server run's time went"
    )
    parser.add_argument("--only", choices=("dag", "warm"), help="one of the two parts")
    args = parser.parse_args(argv)
    if args.only in (None, "dag"):
        measure_dag(args.repeat, args.timeline)
    if args.only in (None, "warm"):
        measure_warm(args.repeat, args.timeline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
