"""Throughput ceilings, measured by load: the store (SQLite, PostgreSQL), the run queue and
Redis, each driven by N concurrent client processes through Conveyor's own code.

- The store: each writer process replays what the engine writes for each job of a run:
  the job's RUNNING and its outcome, each one `Store.set_job_states` transaction (what the
  engine's state writer sends; the update of the job's row and its event), against a run
  created beforehand with `Store.create_run`. Every write transaction takes the
  database's one write lock (`BEGIN IMMEDIATE`; `pg_advisory_xact_lock` on PostgreSQL).
- The run queue: each process enqueues an entry (`queue.enqueue`) and claims the oldest
  one (`queue.claim_next`, `FOR UPDATE SKIP LOCKED` on PostgreSQL).
- Redis: each client process sends no-op jobs one after the other through the run's
  side's real `follow()` (Celery's publish, then XREAD BLOCK, EXISTS of the claim, GET of
  the result), and a thread of the same process takes each task off the queue with
  Celery's Redis transport (kombu: BRPOP, the unacked bookkeeping, the late ack) and hands
  it to the real `WorkerRuntime.handle` (claim SET NX, its lease, the log line XADD, the
  result SET NX, the end marker, the release), with the command itself left out.

Each sample runs its clients for `--seconds` after a common start; a job counts if it
finished inside the window. The clients share this machine's cores with the servers, so
each figure is a floor of what a dedicated database or Redis host sustains. PostgreSQL is a
real server started here (tests/pg_server.py, `synchronous_commit=off`, as
store_backends.py); Redis a real `redis-server` on 127.0.0.1.

    .venv/bin/python bench/throughput.py --repeat 3 --seconds 1.5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import redis

from common import Figure, console, free_port, header, print_figures, repeat_parser
from conveyor.engine.executors.base import ExecResult, Stream
from conveyor.engine.workers.celery_app import make_app
from conveyor.engine.workers.follow import follow
from conveyor.engine.workers.protocol import JobMessage, JobResult, log_key
from conveyor.engine.workers.runtime import RedisLogSink, WorkerRuntime
from conveyor.engine.workers.sealing import Sealer, new_key
from conveyor.engine.workers.settings import WorkerSettings
from conveyor.states import JobState
from conveyor.store import queue
from conveyor.store.procs import this_process
from conveyor.store.records import JobStateChange, NewJob, NewRun
from conveyor.store.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pg_server import DURABLE, PostgresServer, running_server

BACKENDS = ("sqlite", "postgresql")
WRITERS = (1, 2, 4, 8)
CLAIMERS = (1, 4)
REDIS_CLIENTS = (1, 2, 4, 8)
DEFAULT_REPEAT = 3
DEFAULT_SECONDS = 1.5
# The jobs all writers together can transition in a second without running out of the
# run each created up front (a writer that runs out creates another, inside the window).
JOBS_PER_SECOND_BUDGET = 3000
START_SECONDS = 60.0  # bounds a client that never gets ready

# One unit of work of a client process: returns how many units it completed (0 or 1).
Step = Callable[[], int]
# Builds a client's step inside its own process (connections are never forked).
Client = Callable[[int], Step]


@dataclass
class Load:
    """What the clients of one sample completed inside the window, and in all."""

    in_window: int
    steps: int
    seconds: float
    started: float  # time.monotonic() when the window opened

    @property
    def rate(self) -> float:
        return self.in_window / self.seconds


def _client_process(
    client: Client, index: int, barrier: Barrier, seconds: float, results: Any
) -> None:
    step = client(index)
    barrier.wait(START_SECONDS)
    deadline = time.monotonic() + seconds
    in_window = steps = 0
    while True:
        done = step()
        steps += 1
        if time.monotonic() > deadline:
            break
        in_window += done
    results.put((in_window, steps))


def load(client: Client, count: int, seconds: float) -> Load:
    """`count` processes run `client`'s step from a common start for `seconds`."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(count + 1)  # this process too: it learns when the window opens
    results = context.Queue()
    processes = [
        context.Process(target=_client_process, args=(client, index, barrier, seconds, results))
        for index in range(count)
    ]
    for started in processes:
        started.start()
    barrier.wait(START_SECONDS)
    window_opened = time.monotonic()
    found = [results.get(timeout=START_SECONDS + seconds * 4) for _ in processes]
    for started in processes:
        started.join()
        if started.exitcode != 0:
            raise RuntimeError(f"a client process exited {started.exitcode}")
    return Load(sum(n for n, _ in found), sum(s for _, s in found), seconds, window_opened)


# The store: a job's two transitions, as the engine's state writer sends them.


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _new_run(store: Store, index: int, size: int) -> tuple[int, Iterator[str]]:
    job_ids = [f"job-{number:05d}" for number in range(size)]
    meta = NewRun(pipeline=f"writer-{index}", commit_sha=_digest("commit")[:40], actor="bench")
    run_id = store.create_run(meta, [NewJob(job_id, job_id) for job_id in job_ids])
    return run_id, iter(job_ids)


def job_writer(url: str | None, state_dir: Path, run_size: int) -> Client:
    def client(index: int) -> Step:
        store = Store(state_dir, url)
        run_id, job_ids = _new_run(store, index, run_size)

        def one_job() -> int:
            nonlocal run_id, job_ids
            job_id = next(job_ids, None)
            if job_id is None:  # used up: a new run (counted as the engine's traffic too)
                run_id, job_ids = _new_run(store, index, run_size)
                job_id = next(job_ids)
            started = time.time()
            running = {
                "detail": "cache miss: no earlier run of this job",
                "attempts": 1,
                "started_at": started,
                "cache_key": _digest(job_id),
            }
            store.set_job_states(
                [JobStateChange(run_id, job_id, JobState.RUNNING, running, started)]
            )
            finished = time.time()
            success = {
                "detail": f"took {finished - started:.2f}s (cache miss: no earlier run)",
                "exit_code": 0,
                "finished_at": finished,
                "log_blob": _digest(f"log {job_id}"),
                "outputs_blob": _digest(f"outputs {job_id}"),
            }
            store.set_job_states(
                [JobStateChange(run_id, job_id, JobState.SUCCESS, success, finished)]
            )
            return 1

        return one_job

    return client


def queue_user(url: str | None, state_dir: Path) -> Client:
    def client(index: int) -> Step:
        engine = Store(state_dir, url).engine
        owner = this_process()
        entry = queue.NewQueued(
            repository="https://git.example.com/shop.git",
            commit_sha=_digest("commit")[:40],
            branch="main",
            trigger={"kind": "push", "client": index},
            actor="bench",
            options={},
        )

        def enqueue_and_claim() -> int:
            queue.enqueue(engine, entry)
            return int(queue.claim_next(engine, owner) is not None)

        return enqueue_and_claim

    return client


# Redis: a no-op job's traffic through the run's side's and the worker's own code.


class _Discard:
    def write(self, stream: Stream, line: str) -> None:
        pass


class NoOpWorker(WorkerRuntime):
    """The worker's `handle` with the job's work (checkout, command, files) left out: what
    reaches Redis is a no-op job's, the one log line the worker writes included."""

    async def _deliver(
        self, message: JobMessage, delivery: str, cancelled: threading.Event
    ) -> JobResult:
        sink = RedisLogSink(self.redis, log_key(message.attempt), self.sealer, str)
        sink.write(Stream.SYSTEM, f"on worker {self.name} (delivery {delivery[:12]})")
        return self._result(delivery, ExecResult(0, None, 0.0), None)


def _consume(settings: WorkerSettings, queue_name: str, worker: NoOpWorker) -> None:
    """Take tasks off `queue_name` as a Celery worker does (acks late, one at a time)."""
    app = make_app(settings.broker_url)
    task_queue = app.amqp.queues[queue_name]  # as send_task makes it: missing queues are made

    def on_message(body: Any, message: Any) -> None:
        args, _kwargs, _embed = body
        worker.handle(args[0])
        message.ack()

    with app.connection_for_read() as connection:
        consumer = connection.Consumer([task_queue], callbacks=[on_message], accept=["json"])
        consumer.qos(prefetch_count=1)
        with consumer:
            while True:
                with contextlib.suppress(TimeoutError):
                    connection.drain_events(timeout=1.0)


def celery_jobs(broker_url: str, key: bytes, scratch: Path) -> Client:
    def client(index: int) -> Step:
        settings = WorkerSettings(broker_url, f"oci:{scratch / 'artifacts'}", key)
        sealer = Sealer(key)
        queue_name = f"bench-{index}"
        worker = NoOpWorker(scratch / f"worker-{index}", settings, f"w{index}")
        threading.Thread(target=_consume, args=(settings, queue_name, worker), daemon=True).start()
        loop = asyncio.new_event_loop()

        def one_job() -> int:
            attempt = uuid.uuid4().hex
            message = JobMessage(
                attempt=attempt,
                job_id="noop",
                repository="https://git.example.com/shop.git",
                commit=_digest("commit")[:40],
                prefix="",
                argv=["true"],
                cwd=".",
                env={},
                timeout=None,
                kill_grace=5.0,
                inputs=None,
                run_root="/srv/run",
            )
            sealed = sealer.seal_json(message.to_json())
            loop.run_until_complete(
                follow(
                    settings,
                    sealer,
                    _Discard(),
                    attempt=attempt,
                    queue=queue_name,
                    sealed=sealed,
                    timeout=None,
                    started=time.monotonic(),
                )
            )
            return 1

        return one_job

    return client


@contextlib.contextmanager
def redis_server(scratch: Path) -> Iterator[str]:
    port = free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(scratch),
            "--save", "", "--appendonly", "no"]  # fmt: skip
    with (scratch / "redis.log").open("wb") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _answers(url):
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("redis-server did not start: see its log")
            time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait()


def _answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


@dataclass
class RedisCost:
    """What Redis did for the jobs of a sample: commands and its own CPU time."""

    commands: float = 0.0
    cpu_seconds: float = 0.0
    jobs: int = 0

    def add(self, url: str, run: Callable[[], Load]) -> Load:
        with redis.Redis.from_url(url) as client:
            before = _redis_counters(client)
            measured = run()
            after = _redis_counters(client)
        self.commands += after[0] - before[0]
        self.cpu_seconds += after[1] - before[1]
        self.jobs += measured.steps
        return measured


def _redis_counters(client: redis.Redis) -> tuple[int, float]:
    stats: dict[str, Any] = client.info("stats")
    cpu: dict[str, Any] = client.info("cpu")
    return int(stats["total_commands_processed"]), float(cpu["used_cpu_user"] + cpu["used_cpu_sys"])


# Where PostgreSQL's writers wait: sessions waiting for the write lock, sampled.

WAITING_FOR_THE_LOCK = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
)
SAMPLE_EVERY = 0.02


@dataclass
class LockWaiters:
    """The mean number of sessions waiting for the write lock during each sample."""

    server: PostgresServer
    means: dict[str, list[float]] = field(default_factory=dict)

    def add(self, label: str, run: Callable[[], Load]) -> Load:
        counts: list[tuple[float, int]] = []
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(counts, stop))
        sampler.start()
        try:
            measured = run()
        finally:
            stop.set()
            sampler.join()
        closes = measured.started + measured.seconds
        inside = [count for at, count in counts if measured.started <= at <= closes]
        self.means.setdefault(label, []).append(statistics.mean(inside or [0]))
        return measured

    def _sample(self, counts: list[tuple[float, int]], stop: threading.Event) -> None:
        with self.server.connect() as conn:
            while not stop.wait(SAMPLE_EVERY):
                row = conn.execute(WAITING_FOR_THE_LOCK).fetchone()
                counts.append((time.monotonic(), int(str(row[0])) if row else 0))

    def median(self, label: str) -> float | None:
        found = self.means.get(label)
        return statistics.median(found) if found else None


# The run: every contender once per round, so they share the machine's mood.


@dataclass
class Series:
    label: str
    rates: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def _round_robin(contenders: dict[str, Callable[[], Load]], repeat: int) -> dict[str, Series]:
    series = {label: Series(label) for label in contenders}
    for round_number in range(repeat):
        for label, measure in contenders.items():
            series[label].rates.append(measure().rate)
        console.print(f"[dim]round {round_number + 1}/{repeat} done; load {_load()}[/]")
    return series


def _many(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _table(
    title: str, series: Sequence[Series], unit: str, waiters: LockWaiters | None = None
) -> None:
    from rich.table import Table

    console.print(f"[bold]{title}[/]")
    table = Table(box=None, pad_edge=False)
    columns = ["", f"{unit}/s median", "min", "max", f"{unit}/min", "x first"]
    if waiters is not None:
        columns.append("lock waiters")
    for column in columns:
        table.add_column(column, justify="left" if not column else "right")
    for entry in series:
        row = [
            entry.label.rsplit(", ", 1)[-1],  # the title names the rest
            f"{entry.median:,.0f}",
            f"{min(entry.rates):,.0f}",
            f"{max(entry.rates):,.0f}",
            f"{entry.median * 60:,.0f}",
            f"{entry.median / series[0].median:.2f}",
        ]
        if waiters is not None:
            waiting = waiters.median(entry.label)
            row.append("" if waiting is None else f"{waiting:.1f}")
        table.add_row(*row)
    console.print(table)


@dataclass
class Contenders:
    """Every sample of the run, by label, with what is measured alongside it."""

    seconds: float
    waiters: LockWaiters
    redis_cost: RedisCost = field(default_factory=RedisCost)
    samples: dict[str, Callable[[], Load]] = field(default_factory=dict)

    def add_store(self, label: str, backend: str, client: Client, count: int) -> None:
        def run() -> Load:
            return load(client, count, self.seconds)

        def sample() -> Load:
            return self.waiters.add(label, run) if backend == "postgresql" else run()

        self.samples[label] = sample

    def add_redis(self, label: str, url: str, client: Client, count: int) -> None:
        self.samples[label] = lambda: self.redis_cost.add(
            url, lambda: load(client, count, self.seconds)
        )


def measure(repeat: int, seconds: float) -> list[Figure]:
    header("throughput ceilings: the store, the run queue, Redis")
    console.print(f"load average before: {_load()}")
    with (
        running_server(DURABLE) as server,
        tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp,
    ):
        scratch = Path(tmp)
        urls: dict[str, str | None] = {
            "sqlite": None,
            "postgresql": server.url(server.new_database()),
        }
        states = {backend: scratch / backend for backend in BACKENDS}
        for backend in BACKENDS:  # tables created once, before any client forks
            Store(states[backend], urls[backend]).close()
        contenders = Contenders(seconds, LockWaiters(server))
        for backend in BACKENDS:
            for count in WRITERS:
                run_size = int(JOBS_PER_SECOND_BUDGET * seconds) // count + 100
                writer = job_writer(urls[backend], states[backend], run_size)
                contenders.add_store(f"{backend}, {_many(count, 'writer')}", backend, writer, count)
        for backend in BACKENDS:
            user = queue_user(urls[backend], states[backend])
            for count in CLAIMERS:
                contenders.add_store(
                    f"queue {backend}, {_many(count, 'claimer')}", backend, user, count
                )
        with redis_server(scratch) as broker_url:
            jobs = celery_jobs(broker_url, new_key(), scratch)
            for count in REDIS_CLIENTS:
                contenders.add_redis(f"redis, {_many(count, 'client')}", broker_url, jobs, count)
            series = _round_robin(contenders.samples, repeat)
    return report(series, contenders)


def report(series: dict[str, Series], contenders: Contenders) -> list[Figure]:
    waiters = contenders.waiters
    for backend in BACKENDS:
        _table(
            f"store, {backend}: jobs (RUNNING + outcome) per second",
            [series[f"{backend}, {_many(count, 'writer')}"] for count in WRITERS],
            "jobs",
            waiters if backend == "postgresql" else None,
        )
    for backend in BACKENDS:
        _table(
            f"run queue, {backend}: enqueue + claim_next per second",
            [series[f"queue {backend}, {_many(count, 'claimer')}"] for count in CLAIMERS],
            "runs",
            waiters if backend == "postgresql" else None,
        )
    _table(
        "Redis: no-op Celery jobs per second",
        [series[f"redis, {_many(count, 'client')}"] for count in REDIS_CLIENTS],
        "jobs",
    )
    cost = contenders.redis_cost
    commands = cost.commands / cost.jobs
    cpu_ms = cost.cpu_seconds / cost.jobs * 1e3
    console.print(
        f"Redis per job: {commands:.1f} commands, {cpu_ms:.3f} ms of redis-server CPU "
        f"(one core busy: {1e3 / cpu_ms:,.0f} jobs/s)"
    )
    figures = [
        Figure(f"{label}: best median", max(s.median for s in group), "/s")
        for label, group in _groups(series).items()
    ]
    figures += [
        Figure("Redis commands per no-op job (replayed)", commands, ""),
        Figure("redis-server CPU per no-op job", cpu_ms, "ms"),
        Figure("Redis at one busy core (from its CPU per job)", 1e3 / cpu_ms, "jobs/s"),
    ]
    print_figures("throughput ceilings", figures)
    console.print(f"load average after: {_load()}")
    return figures


def _groups(series: dict[str, Series]) -> dict[str, list[Series]]:
    groups: dict[str, list[Series]] = {}
    for label, entry in series.items():
        groups.setdefault(label.rsplit(",", 1)[0], []).append(entry)
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = repeat_parser(__doc__ or "")
    parser.set_defaults(repeat=DEFAULT_REPEAT)
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help=f"length of each sample's window (default: {DEFAULT_SECONDS})",
    )
    args: argparse.Namespace = parser.parse_args(argv)
    measure(args.repeat, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
