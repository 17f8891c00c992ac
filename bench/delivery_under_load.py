"""Delivery under load: a rolling deploy and a rollback at 500 req/s, builtin and HAProxy.

One project per router (`process` runtime, staging with 2 replicas of the tiny threaded app
of tests/deploy/apps.py, which names its version in `X-App-Version`), v1 deployed first.
Then each round, for each router in turn: a rolling deploy of a new version vN under load
(failed requests, duration, share of vN over time); then, vN live and v1 warm, a rollback
to v1 under load (the controller's `switch_seconds`, the time until every request sent is
answered by v1, failed requests before and after it started).

The load is open-loop: GET / scheduled at t0 + i/rate on keep-alive connections (asyncio
and h11, in a process of its own so the controller's work here does not delay it), with no
cookies, so the router picks a release for every request. A slow switch shows as latency,
measured from the scheduled time. A GET sent on a kept-alive connection that the server
closed before answering a byte is sent again once on a new connection, as HTTP clients
do; those retries are counted apart from failures.

    .venv/bin/python bench/delivery_under_load.py --repeat 3
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
from rich.table import Table

from common import Figure, console, header, print_figures, repeat_parser
from conveyor.deploy.routers.registry import ROUTERS
from conveyor.service import environments as envs
from conveyor.service.project import Project
from conveyor.states import DeployState
from conveyor.store.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.deploy
from tests.deploy.apps import build_app, make_project

ENVIRONMENT = "staging"
STABLE = "v1"
ACTOR = "bench"
SETTLE_SECONDS = 1.0  # load before and after a rolling deploy
AROUND_ROLLBACK_SECONDS = 3.0  # load before the rollback starts, and from then on
BUCKET_SECONDS = 0.25  # of the deploy's timeline
WARMUP_SECONDS = 0.5  # first connections, router to replicas: left out of the latencies
STALL_SECONDS = 0.5  # a request this slow waited on something (a SYN retransmit: 1 s)
REQUEST_TIMEOUT = 10.0
START_TIMEOUT = 30.0


# --- the load generator, in a child process ---------------------------------------------


@dataclass(frozen=True)
class Answer:
    scheduled: float  # time.monotonic(): one clock for every process of the machine
    sent: float
    done: float
    status: int  # 0: no response
    version: str | None
    error: str | None
    retried: bool  # its kept-alive connection closed under it; sent again on a new one

    @property
    def failed(self) -> bool:
        return self.error is not None or self.status >= 500


class StaleConnectionError(ConnectionError):
    """Closed by the server before a byte of the response: a GET may be sent again."""


@dataclass
class KeepAlive:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))


class Client:
    """Keep-alive HTTP/1.1 connections to host:port, one per request in flight."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self.idle: list[KeepAlive] = []
        self._slots = asyncio.Semaphore(limit)

    async def get(self, path: str) -> tuple[int, str | None, bool]:
        """Status and X-App-Version of GET `path`, and whether it was sent twice."""
        async with self._slots:
            retried = False
            while self.idle and not retried:
                connection = self.idle.pop()
                if connection.reader.at_eof():  # closed while idle, seen before sending
                    connection.writer.close()
                    continue
                try:
                    return (*await self._exchange(connection, path), False)
                except StaleConnectionError:
                    retried = True
            reader, writer = await asyncio.open_connection(self.host, self.port)
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                return (*await self._exchange(KeepAlive(reader, writer), path), retried)
            except StaleConnectionError as error:
                raise ConnectionError("closed before answering") from error

    async def _exchange(self, connection: KeepAlive, path: str) -> tuple[int, str | None]:
        protocol = connection.protocol
        request = h11.Request(method="GET", target=path, headers=[("Host", self.host)])
        try:
            try:
                connection.writer.write(protocol.send(request) + protocol.send(h11.EndOfMessage()))
                await connection.writer.drain()
            except (ConnectionResetError, BrokenPipeError) as error:
                raise StaleConnectionError(str(error)) from error
            answer = await _read_response(connection)
        except BaseException:
            connection.writer.close()
            raise
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
            protocol.start_next_cycle()
            self.idle.append(connection)
        else:
            connection.writer.close()
        return answer


async def _read_response(connection: KeepAlive) -> tuple[int, str | None]:
    status, version, received = 0, None, 0
    while True:
        event = connection.protocol.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await connection.reader.read(65536)
            except ConnectionResetError:
                data = b""
            if not data and not received:
                raise StaleConnectionError("closed before the response")
            received += len(data)
            connection.protocol.receive_data(data)  # b"" within a response: h11 raises
        elif isinstance(event, h11.Response):
            status = event.status_code
            version = dict(event.headers).get(b"x-app-version", b"").decode() or None
        elif isinstance(event, h11.EndOfMessage):
            return status, version
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("closed during the response")


async def _request(client: Client, scheduled: float, answers: list[Answer]) -> None:
    sent = time.monotonic()
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            status, version, retried = await client.get("/")
    except (OSError, h11.ProtocolError, TimeoutError) as error:
        failure = f"{type(error).__name__}: {error}"
        answers.append(Answer(scheduled, sent, time.monotonic(), 0, None, failure, False))
        return
    answers.append(Answer(scheduled, sent, time.monotonic(), status, version, None, retried))


async def _generate(url: str, rate: int, limit: int, stop: Event, pipe: Connection) -> list[Answer]:
    address = urlsplit(url)
    client = Client(address.hostname or "127.0.0.1", address.port or 80, limit)
    answers: list[Answer] = []
    in_flight: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    pipe.send(start)
    count = 0
    while not stop.is_set():
        delay = start + count / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(_request(client, start + count / rate, answers))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        count += 1
    if in_flight:
        await asyncio.wait(in_flight)  # each ends within REQUEST_TIMEOUT
    for connection in client.idle:
        connection.writer.close()
    return answers


def run_generator(url: str, rate: int, limit: int, stop: Event, pipe: Connection) -> None:
    with contextlib.suppress(KeyboardInterrupt), pipe:
        pipe.send(asyncio.run(_generate(url, rate, limit, stop, pipe)))


@contextlib.contextmanager
def load(url: str, rate: int, limit: int) -> Iterator[Callable[[], list[Answer]]]:
    """The generator in a child process, sending from entering; yields what stops it and
    returns its answers."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    results, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=run_generator, args=(url, rate, limit, stop, sender), daemon=True
    )

    def receive(timeout: float) -> Any:
        with contextlib.suppress(EOFError):
            if results.poll(timeout):
                return results.recv()
        raise RuntimeError(f"the load generator exited with {process.exitcode}")

    def stopped() -> list[Answer]:
        stop.set()
        answers: list[Answer] = receive(REQUEST_TIMEOUT + START_TIMEOUT)
        return answers

    process.start()
    sender.close()  # the child has its own copy
    try:
        receive(START_TIMEOUT)
        yield stopped
    except BaseException:
        process.terminate()
        raise
    finally:
        stop.set()
        process.join(timeout=REQUEST_TIMEOUT)
        if process.is_alive():
            process.kill()
            process.join()
        results.close()


# --- reading the answers ------------------------------------------------------------------


@dataclass(frozen=True)
class LoadStats:
    """The generator and the latencies: failures are counted elsewhere, over every request."""

    achieved_rate: float  # requests sent per second over the window
    lag_p99_ms: float  # how late the generator sent, against its schedule
    latency_p50_ms: float  # completion - scheduled time, after the warm-up
    latency_p99_ms: float
    latency_max_ms: float
    stalled: int  # over STALL_SECONDS, after the warm-up
    retried: int


def load_stats(answers: Sequence[Answer]) -> LoadStats:
    sent = sorted(a.sent for a in answers)
    warm_from = min(a.scheduled for a in answers) + WARMUP_SECONDS
    warm = [a for a in answers if a.scheduled >= warm_from]
    latencies = [a.done - a.scheduled for a in warm]
    lags = statistics.quantiles([a.sent - a.scheduled for a in answers], n=100)
    percentiles = statistics.quantiles(latencies, n=100)
    return LoadStats(
        (len(sent) - 1) / (sent[-1] - sent[0]),
        lags[98] * 1e3,
        percentiles[49] * 1e3,
        percentiles[98] * 1e3,
        max(latencies) * 1e3,
        sum(latency > STALL_SECONDS for latency in latencies),
        sum(a.retried for a in answers),
    )


def time_to_stable(answers: Sequence[Answer], since: float) -> float:
    """From `since` until the first request after which every request sent (by send time)
    is answered by STABLE; infinite if the window ends before."""
    others = [a.sent for a in answers if a.failed or a.version != STABLE]
    last_other = max(others, default=-math.inf)
    after = [a.sent for a in answers if a.sent >= since and a.sent > last_other]
    return min(after) - since if after else math.inf


def timeline(answers: Sequence[Answer], version: str, start: float, end: float) -> str:
    """% of the answered requests answered by `version`, per BUCKET_SECONDS (coarse)."""
    shares = []
    for index in range(math.ceil((end - start) / BUCKET_SECONDS)):
        low = start + index * BUCKET_SECONDS
        ok = [a for a in answers if low <= a.sent < low + BUCKET_SECONDS and not a.failed]
        shares.append(f"{100 * sum(a.version == version for a in ok) / max(len(ok), 1):.0f}")
    return " ".join(shares)


# --- the two scenarios --------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """The staging environment of one router's project, its store open."""

    router: str
    project: Project
    store: Store
    sources: Path
    rate: int
    connections: int

    def load(self) -> contextlib.AbstractContextManager[Callable[[], list[Answer]]]:
        record = self.store.ledger.environments.get(ENVIRONMENT)
        assert record is not None, "staging is deployed before any load"
        return load(f"http://127.0.0.1:{record.port}", self.rate, self.connections)

    def deploy(self, version: str) -> None:
        image = build_app(self.project, self.sources, version)
        outcome = envs.deploy(self.project, self.store, ENVIRONMENT, image, actor=ACTOR)
        if outcome.state is not DeployState.SUCCEEDED:
            raise RuntimeError(f"{self.router} {version}: {outcome.state}: {outcome.reason}")


@dataclass(frozen=True)
class DeployRound:
    seconds: float
    failed: int  # from SETTLE_SECONDS before the deploy until SETTLE_SECONDS after it
    timeline: str
    load: LoadStats


@dataclass(frozen=True)
class RollbackRound:
    switch_seconds: float
    to_stable: float
    failed_before: int
    failed_after: int
    load: LoadStats


@dataclass
class Rounds:
    deploys: list[DeployRound] = field(default_factory=list)
    rollbacks: list[RollbackRound] = field(default_factory=list)


def rolling_deploy(stage: Stage, version: str) -> DeployRound:
    """v1 live and nothing warm: deploy `version` under load."""
    with stage.load() as stop_load:
        time.sleep(SETTLE_SECONDS)
        started = time.monotonic()
        stage.deploy(version)
        finished = time.monotonic()
        time.sleep(SETTLE_SECONDS)
        answers = stop_load()
    return DeployRound(
        finished - started,
        sum(a.failed for a in answers),
        timeline(answers, version, started, finished + BUCKET_SECONDS),
        load_stats(answers),
    )


def rollback(stage: Stage) -> RollbackRound:
    """A new version live and v1 warm: roll back to v1 under load."""
    with stage.load() as stop_load:
        time.sleep(AROUND_ROLLBACK_SECONDS)
        started = time.monotonic()
        outcome = envs.rollback(stage.project, stage.store, ENVIRONMENT, actor=ACTOR)
        time.sleep(max(0.0, started + AROUND_ROLLBACK_SECONDS - time.monotonic()))
        answers = stop_load()
    return RollbackRound(
        outcome.switch_seconds,
        time_to_stable(answers, started),
        sum(a.failed for a in answers if a.sent < started),
        sum(a.failed for a in answers if a.sent >= started),
        load_stats(answers),
    )


# --- the run --------------------------------------------------------------------------------


@contextlib.contextmanager
def stages(scratch: Path, drain: str, rate: int, connections: int) -> Iterator[list[Stage]]:
    """A project per router with v1 live; every environment stopped on the way out, ^C too."""
    with contextlib.ExitStack() as stack:
        found = []
        for router in ROUTERS.names:
            root = scratch / router
            project = make_project(root / "project", replicas=2, router=router, drain=drain)
            store = stack.enter_context(project.open_store())
            stack.callback(envs.stop_environment, project, store, ENVIRONMENT)
            stage = Stage(router, project, store, root, rate, connections)
            stage.deploy(STABLE)
            found.append(stage)
        yield found


def report_round(number: int, stage: Stage, deploy: DeployRound, back: RollbackRound) -> None:
    console.print(
        f"round {number} {stage.router}: deploy {deploy.seconds:.2f} s, {deploy.failed} failed,"
        f" {deploy.load.retried} retried, {deploy.load.stalled} over {STALL_SECONDS:g} s, "
        f"% on the new version per {BUCKET_SECONDS:g} s: {deploy.timeline} | rollback: switch "
        f"{back.switch_seconds:.3f} s, stable after {back.to_stable:.3f} s, failed "
        f"{back.failed_before} before + {back.failed_after} after, {back.load.retried} "
        f"retried, {back.load.stalled} over {STALL_SECONDS:g} s"
    )


Columns = dict[str, Callable[[Rounds], str]]
ROLLBACK_COLUMNS: Columns = {
    "switch s": lambda r: f"{statistics.median(b.switch_seconds for b in r.rollbacks):.3f}",
    "stable s": lambda r: f"{statistics.median(b.to_stable for b in r.rollbacks):.3f}",
    "stable max": lambda r: f"{max(b.to_stable for b in r.rollbacks):.3f}",
    "failed before": lambda r: str(sum(b.failed_before for b in r.rollbacks)),
    "after": lambda r: str(sum(b.failed_after for b in r.rollbacks)),
    "retried": lambda r: str(sum(b.load.retried for b in r.rollbacks)),
}
DEPLOY_COLUMNS: Columns = {
    "deploy s": lambda r: f"{statistics.median(d.seconds for d in r.deploys):.2f}",
    "deploy max": lambda r: f"{max(d.seconds for d in r.deploys):.2f}",
    "failed": lambda r: str(sum(d.failed for d in r.deploys)),
    "retried": lambda r: str(sum(d.load.retried for d in r.deploys)),
}
LOAD_COLUMNS: dict[str, Callable[[list[LoadStats]], str]] = {
    "req/s sent": lambda s: f"{statistics.median(x.achieved_rate for x in s):.0f}",
    "lag p99 ms": lambda s: f"{statistics.median(x.lag_p99_ms for x in s):.1f}",
    "p50 ms": lambda s: f"{statistics.median(x.latency_p50_ms for x in s):.1f}",
    "p99 ms": lambda s: f"{statistics.median(x.latency_p99_ms for x in s):.1f}",
    "max ms": lambda s: f"{max(x.latency_max_ms for x in s):.0f}",
    f"> {STALL_SECONDS:g} s": lambda s: str(sum(x.stalled for x in s)),
}


def print_table(title: str, columns: list[str], rows: dict[str, list[str]]) -> None:
    console.print(f"[bold]{title}[/]")
    table = Table(box=None, pad_edge=False)
    for column in ("", *columns):
        table.add_column(column, justify="right" if column else "left")
    for label, cells in rows.items():
        table.add_row(label, *cells)
    console.print(table)


def print_results(results: dict[str, Rounds]) -> None:
    for title, columns in (("rollback", ROLLBACK_COLUMNS), ("rolling deploy", DEPLOY_COLUMNS)):
        rows = {
            r.value: [cell(rounds) for cell in columns.values()] for r, rounds in results.items()
        }
        print_table(f"{title} under load: medians; failures and retries summed", [*columns], rows)
    loads = {
        f"{scenario} {router}": stats
        for router, rounds in results.items()
        for scenario, stats in (
            ("rollback", [b.load for b in rounds.rollbacks]),
            ("deploy", [d.load for d in rounds.deploys]),
        )
    }
    rows = {
        label: [cell(stats) for cell in LOAD_COLUMNS.values()] for label, stats in loads.items()
    }
    print_table(
        f"the load: medians; max and stalls over every round; latencies after "
        f"{WARMUP_SECONDS:g} s of warm-up",
        [*LOAD_COLUMNS],
        rows,
    )


def figures_of(results: dict[str, Rounds]) -> list[Figure]:
    figures = []
    for router, rounds in results.items():
        stable = max(b.to_stable for b in rounds.rollbacks)
        failed_after = sum(b.failed_after for b in rounds.rollbacks)
        failed_deploying = sum(d.failed for d in rounds.deploys)
        figures += [
            Figure(f"{router}: rollback, time to 100 % stable (max)", stable, "s", 1.0),
            Figure(f"{router}: rollback, failed requests once started", failed_after, "req", 0),
            Figure(f"{router}: rolling deploy, failed requests", failed_deploying, "req", 0),
        ]
    return figures


def measure(
    repeat: int, *, rate: int = 500, connections: int = 64, drain: str = "1s"
) -> list[Figure]:
    if shutil.which("haproxy") is None:
        raise SystemExit("haproxy is not installed: apt-get install -y haproxy")
    os.environ.pop("CONVEYOR_STATE_DIR", None)  # each project keeps its own state
    os.environ.pop("CONVEYOR_DATABASE_URL", None)
    header(f"delivery under load: {rate} req/s open-loop, process runtime, 2 replicas")
    load_average = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    console.print(
        f"the generator, both routers and all replicas share this machine; drain {drain}; "
        f"load average {load_average}"
    )
    results = {router: Rounds() for router in ROUTERS.names}
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bench-delivery-") as scratch,
        stages(Path(scratch), drain, rate, connections) as found,
    ):
        for number in range(1, repeat + 1):
            for stage in found:  # interleaved: both routers share the machine's mood
                deploy = rolling_deploy(stage, f"v{number + 1}")
                back = rollback(stage)
                results[stage.router].deploys.append(deploy)
                results[stage.router].rollbacks.append(back)
                report_round(number, stage, deploy, back)
    load_average = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    console.print(f"{time.monotonic() - began:.0f} s in all; load average after {load_average}")
    print_results(results)
    figures = figures_of(results)
    print_figures("delivery under load", figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = repeat_parser(__doc__ or "")
    parser.set_defaults(repeat=3)
    parser.add_argument("--rate", type=int, default=500, help="requests per second")
    parser.add_argument("--connections", type=int, default=64, help="at most this many open")
    parser.add_argument("--drain", default="1s", help="the environments' drain (conveyor.yml)")
    args = parser.parse_args(argv)
    try:
        measure(args.repeat, rate=args.rate, connections=args.connections, drain=args.drain)
    except KeyboardInterrupt:
        console.print("interrupted; the environments are stopped")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
