"""The web UI's pages and logs under load: server time of the runs list and a run page with
10,000 runs and 200,000 jobs in the store; a 50 MB job log's first view against a 5 kB
one; 100 live viewers of a growing log.

The server runs in a process of its own (this file with --serve), wrapped in a middleware
that reports each response's server time (`Server-Timing: app;dur=<ms>`, from the
request's arrival to the response's start: the page is rendered by then). The 100 viewers
are httpx streams in one asyncio loop here; a writer appends a line stamped with its
write time every 100 ms to the live job's log file; latency is from that write to each
viewer receiving the line.

    .venv/bin/python bench/ui_pages.py [--repeat 200] [--viewers 100] [--lines 50]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from common import (
    PYTHON,
    Figure,
    clean_env,
    committed_repository,
    console,
    free_port,
    header,
    print_figures,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server.bulk_runs import fill  # type: ignore[import-not-found]  # the tests' filler

RUNS = 10_000
JOBS_PER_RUN = 20
BIG_LOG = 50 * 1024 * 1024
SMALL_LOG = 5 * 1024
SPEC = "version: 1\nname: ci\njobs:\n  build:\n    run: echo built\n"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


def server_timing(app: ASGIApp) -> ASGIApp:
    async def timed(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                message.setdefault("headers", []).append(
                    (b"server-timing", f"app;dur={took:.3f}".encode())
                )
            await send(message)

        await app(scope, receive, send_timed)

    return timed


def serve(root: Path, port: int, token_check: bool) -> None:
    import uvicorn

    from conveyor.server.app import create_app
    from conveyor.server.auth import Principal, current_principal
    from conveyor.server.context import ServerContext
    from conveyor.service.project import Project

    context = ServerContext.open(Project.locate(root / "conveyor.yml"), f"http://127.0.0.1:{port}")
    app = create_app(context)
    if not token_check:  # the page's own time: a browser session, not a token's scrypt
        viewer = Principal("viewer", frozenset({"viewer"}), via="session")
        app.dependency_overrides[current_principal] = lambda: viewer
    uvicorn.run(
        server_timing(app),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )


def prepare(root: Path) -> dict[str, Any]:
    """The store: 10,000 runs, 200,000 jobs; one run with a 50 MB and a 5 kB log, and one
    running job whose live log the writer grows. Returns what the clients need."""
    from conveyor.approvals.users import add_user, issue_token, users_path
    from conveyor.service.project import Project
    from conveyor.service.queries import live_log_path
    from conveyor.states import JobState
    from conveyor.store.records import NewJob, NewRun

    project = Project.locate(root / "conveyor.yml")
    store = project.open_store()
    started = time.perf_counter()
    fill(store, RUNS, JOBS_PER_RUN)
    console.print(
        f"filled {RUNS} runs, {RUNS * JOBS_PER_RUN} jobs in {time.perf_counter() - started:.1f}s"
    )
    logs = store.create_run(
        NewRun(pipeline="ci", branch="main", message="logs"),
        [NewJob("big", "big"), NewJob("small", "small"), NewJob("live", "live")],
    )
    line = b"0.100\tstdout\t" + b"\x1b[32mok\x1b[0m " + b"x" * 80 + b"\n"
    for job, size in (("big", BIG_LOG), ("small", SMALL_LOG)):
        data = line * (size // len(line))
        store.set_job_state(logs, job, JobState.RUNNING)
        store.set_job_state(logs, job, JobState.SUCCESS, log_blob=store.blobs.put_bytes(data))
    store.set_job_state(logs, "live", JobState.RUNNING)
    live = live_log_path(project, logs, store.get_job(logs, "live"))
    live.parent.mkdir(parents=True, exist_ok=True)
    live.write_bytes(b"")
    store.close()
    users = users_path(project.state_dir)
    add_user(users, "viewer", "viewer@example.org", ["viewer"], [])
    token = issue_token(users, "viewer", None, datetime.now(UTC)).token
    return {"token": token, "logs_run": logs, "live_log": live, "a_run": RUNS // 2}


def server_ms(client: httpx.Client, path: str, repeat: int) -> list[float]:
    found = []
    for _ in range(repeat):
        response = client.get(path)
        response.raise_for_status()
        found.append(float(response.headers["server-timing"].split("dur=")[1]))
    return found


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def viewers(
    base: str, token: str, topic: str, live: Path, count: int, lines: int
) -> list[float]:
    """Latency (s) of each line at each viewer: from the write to the viewer reading it."""
    latencies: list[float] = []
    connected = 0
    all_connected = asyncio.Event()

    async def view(client: httpx.AsyncClient) -> None:
        nonlocal connected
        seen = 0
        async with client.stream("GET", f"/api/v1/events?topic={topic}") as stream:
            buffer = ""
            async for chunk in stream.aiter_text():
                if chunk.startswith(": connected"):
                    connected += 1
                    if connected == count:
                        all_connected.set()
                buffer += chunk
                while "\n\n" in buffer:
                    event, buffer = buffer.split("\n\n", 1)
                    data = next((x[6:] for x in event.split("\n") if x.startswith("data: ")), None)
                    if data is None:
                        continue
                    now = time.time()
                    for record in json.loads(data).get("text", "").splitlines():
                        latencies.append(now - float(record.split("\t")[2].split()[1]))
                        seen += 1
                    if seen >= lines:
                        return

    limits = httpx.Limits(max_connections=count + 10)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=60, limits=limits
    ) as client:
        tasks = [asyncio.create_task(view(client)) for _ in range(count)]
        await asyncio.wait_for(all_connected.wait(), 60)
        writer = threading.Thread(target=write_lines, args=(live, lines), daemon=True)
        writer.start()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return latencies


def write_lines(live: Path, lines: int) -> None:
    with live.open("a", buffering=1) as handle:
        for n in range(lines):
            handle.write(f"{n * 0.1:.3f}\tstdout\tline {time.time():.6f} {n}\n")
            time.sleep(0.1)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200, help="requests per page (default 200)")
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--lines", type=int, default=50, help="lines the writer appends")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token-check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.token_check)
        return
    header("Server: web UI pages and logs")
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as scratch:
        root = committed_repository({"conveyor.yml": SPEC}, Path(scratch))
        facts = prepare(root)
        with serving(root, token_check=False) as base:
            figures = measure(base, facts, args)
        with serving(root, token_check=True) as base:
            figures += token_cost(base, facts, args)
        print_figures("Goals", figures)


@contextlib.contextmanager
def serving(root: Path, *, token_check: bool) -> Iterator[str]:
    port = free_port()
    command = [PYTHON, __file__, "--serve", str(root), "--port", str(port)]
    server = subprocess.Popen(
        command + ["--token-check"] * token_check,
        env=clean_env(PYTHONPATH=os.pathsep.join(sys.path)),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base)
        yield base
    finally:
        server.terminate()
        server.wait(10)


def wait_for(base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base + "/healthz")
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def token_cost(base: str, facts: dict[str, Any], args: Any) -> list[Figure]:
    """The same first page with the bearer token checked on each request (scrypt)."""
    headers = {"Authorization": f"Bearer {facts['token']}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        ms = server_ms(client, "/runs", max(10, args.repeat // 5))
    console.print(
        f"  {'/runs with a bearer token checked':34} p50 {statistics.median(ms):7.2f}  "
        f"p95 {p(ms, 0.95):7.2f}  max {max(ms):7.2f}"
    )
    return []


def measure(base: str, facts: dict[str, Any], args: Any) -> list[Figure]:
    headers = {"Authorization": f"Bearer {facts['token']}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        deep = client.get("/runs?before=" + str(RUNS // 2)).text  # warm up, and one deep page
        assert "data-run" in deep
        run = facts["a_run"]
        logs = facts["logs_run"]
        pages = {
            "/runs (first page)": "/runs",
            "/runs (branch + status filter)": "/runs?branch=develop&status=failed",
            "/runs (commit prefix filter)": "/runs?commit=0000138",
            "/runs (deep page, before=500)": "/runs?before=500",
            "/runs/{id} (20 jobs)": f"/runs/{run}",
            "log page, 5 kB log": f"/runs/{logs}/jobs/small/log",
            "log page, 50 MB log": f"/runs/{logs}/jobs/big/log",
        }
        figures = []
        console.print(f"server time over {args.repeat} requests each (ms):")
        for name, path in pages.items():
            server_ms(client, path, 5)  # warm
            ms = server_ms(client, path, args.repeat)
            goal = 100.0 if name.startswith("/runs (") else 150.0 if "{id}" in name else 200.0
            console.print(
                f"  {name:34} p50 {statistics.median(ms):7.2f}  p95 {p(ms, 0.95):7.2f}  "
                f"max {max(ms):7.2f}"
            )
            figures.append(Figure(f"{name} p95", p(ms, 0.95), "ms", goal))
    topic = f"log:{logs}:live"
    latencies = asyncio.run(
        viewers(base, facts["token"], topic, facts["live_log"], args.viewers, args.lines)
    )
    ms = [value * 1000 for value in latencies]
    console.print(
        f"{args.viewers} live viewers, {args.lines} lines at 10/s: {len(ms)} deliveries, "
        f"latency p50 {statistics.median(ms):.1f} ms, p95 {p(ms, 0.95):.1f} ms, "
        f"max {max(ms):.1f} ms"
    )
    figures.append(Figure("live log: write to viewer, max", max(ms), "ms", 1000.0))
    return figures


if __name__ == "__main__":
    main()
