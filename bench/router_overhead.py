"""Router overhead: what the `builtin` and `haproxy` routers add against direct access.

One upstream on 127.0.0.1 (uvicorn, 1 process: a minimal ASGI app by default, or the
sample service's `/healthz` with `--upstream shop`), reached three ways side by side:
directly, through the builtin router, and through HAProxy, each routing 100 % of the
traffic to that one replica. `wrk --latency` loads each target in turn, interleaved round by
round (direct, builtin, haproxy, direct, ...), in two shapes: N connections (default 16),
which saturates the target and gives its maximum requests per second, and 1 connection,
which gives the latency a hop adds without queueing. wrk runs on the same machine.

    .venv/bin/python bench/router_overhead.py --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from common import PYTHON, Figure, console, free_port, header, print_figures, repeat_parser
from conveyor.deploy.model import Backend, RouteTable
from conveyor.deploy.routers.builtin import BuiltinRouter
from conveyor.deploy.routers.haproxy import HAProxyRouter

BENCH_DIR = Path(__file__).resolve().parent
SHOP_DIR = BENCH_DIR.parent / "examples" / "shop"
PATH = "/healthz"
WARMUP_SECONDS = 1
READY_DEADLINE = 20.0
_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}  # to milliseconds
_LATENCY_LINE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS_LINE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX_LINE = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)")

Message = dict[str, Any]


class Target(StrEnum):
    DIRECT = "direct"
    BUILTIN = "builtin"
    HAPROXY = "haproxy"


class Upstream(StrEnum):
    HELLO = "hello"  # a minimal ASGI app: the cheapest upstream uvicorn can serve
    SHOP = "shop"  # examples/shop's /healthz: FastAPI with its metrics and fault middleware


class Shape(StrEnum):
    SATURATING = "saturating"  # N connections: maximum requests per second
    SERIAL = "serial"  # 1 connection: latency without queueing


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx responses plus socket errors


@dataclass(frozen=True)
class Summary:
    """Medians of one target in one load shape; `added_*` and `rps_ratio` compare to direct."""

    target: Target
    p50_ms: float
    p99_ms: float
    requests_per_second: float
    errors: int
    added_p50_ms: float
    added_p99_ms: float
    rps_ratio: float


Results = dict[Shape, dict[Target, list[WrkResult]]]


async def hello_app(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """The same small JSON answer as the shop's `/healthz`, for any path."""
    body = b'{"status":"ok","version":"bench"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def parse_wrk(output: str) -> WrkResult:
    """Requests/sec, the 50 % and 99 % latencies (in ms) and the errors of `wrk --latency`."""
    requests = _REQUESTS_LINE.search(output)
    latencies = {int(m[1]): float(m[2]) * _TIME_UNITS[m[3]] for m in _LATENCY_LINE.finditer(output)}
    if requests is None or set(latencies) != {50, 99}:
        raise RuntimeError(f"unexpected wrk output (was --latency given?):\n{output}")
    non_2xx = _NON_2XX_LINE.search(output)
    sockets = _SOCKET_ERRORS.search(output)
    errors = (int(non_2xx[1]) if non_2xx else 0) + (
        sum(int(count) for count in sockets.groups()) if sockets else 0
    )
    return WrkResult(float(requests[1]), latencies[50], latencies[99], errors)


def run_wrk(wrk: str, url: str, connections: int, seconds: int) -> WrkResult:
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=seconds + 30
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    return parse_wrk(done.stdout)


def required_tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed: apt-get install -y {package}")
    return found


def upstream_command(kind: Upstream, port: int, workdir: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if kind is Upstream.SHOP:
        env.update(
            PYTHONPATH=str(SHOP_DIR), HOST="127.0.0.1", PORT=str(port), SHOP_DB=str(workdir / "db")
        )
        return [PYTHON, "-m", "app"], env
    command = [
        PYTHON, "-m", "uvicorn", f"{Path(__file__).stem}:hello_app",
        "--app-dir", str(BENCH_DIR), "--host", "127.0.0.1", "--port", str(port),
        "--lifespan", "off", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return command, env


@contextlib.contextmanager
def running_upstream(kind: Upstream, workdir: Path) -> Iterator[str]:
    """The upstream as a child process; yields its host:port."""
    port = free_port()
    command, env = upstream_command(kind, port, workdir)
    with (workdir / "upstream.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        wait_ready(f"http://127.0.0.1:{port}{PATH}", process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_DEADLINE
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"the upstream at {url} did not start (see its upstream.log)")


@contextlib.contextmanager
def running_targets(address: str, workdir: Path) -> Iterator[dict[Target, str]]:
    """Both routers in front of `address`, 100 % to it; stopped on the way out, even on ^C."""
    routes = RouteTable(backends=(Backend("bench", "v1", (address,), 100),))
    builtin = BuiltinRouter(workdir / "builtin", free_port(), free_port())
    haproxy = HAProxyRouter(workdir / "haproxy", free_port(), free_port())
    with contextlib.ExitStack() as stack:
        urls = {Target.DIRECT: f"http://{address}{PATH}"}
        for target, router in ((Target.BUILTIN, builtin), (Target.HAPROXY, haproxy)):
            stack.callback(router.stop)
            urls[target] = router.ensure_running() + PATH
            router.set_routes(routes)
        yield urls


def collect(
    urls: dict[Target, str], repeat: int, seconds: int, connections: int, wrk: str
) -> Results:
    shapes = {Shape.SATURATING: connections, Shape.SERIAL: 1}
    for url in urls.values():  # warm up: connection pools, caches, the upstream's first calls
        run_wrk(wrk, url, connections, WARMUP_SECONDS)
    results: Results = {shape: {target: [] for target in urls} for shape in shapes}
    for round_number in range(1, repeat + 1):
        for shape, count in shapes.items():
            cells = []
            for target, url in urls.items():
                result = run_wrk(wrk, url, count, seconds)
                results[shape][target].append(result)
                cells.append(
                    f"{target} {result.requests_per_second:,.0f}/s "
                    f"p50 {result.p50_ms:.2f} p99 {result.p99_ms:.2f} ms"
                    + (f" [red]{result.errors} errors[/]" if result.errors else "")
                )
            console.print(f"round {round_number}, {count} conn: " + " | ".join(cells))
    return results


def summarize(samples: dict[Target, list[WrkResult]]) -> list[Summary]:
    def medians(results: list[WrkResult]) -> tuple[float, float, float]:
        return (
            statistics.median(r.p50_ms for r in results),
            statistics.median(r.p99_ms for r in results),
            statistics.median(r.requests_per_second for r in results),
        )

    base_p50, base_p99, base_rps = medians(samples[Target.DIRECT])
    summaries = []
    for target, results in samples.items():
        p50, p99, rps = medians(results)
        errors = sum(r.errors for r in results)
        summaries.append(
            Summary(target, p50, p99, rps, errors, p50 - base_p50, p99 - base_p99, rps / base_rps)
        )
    return summaries


def print_summary(title: str, summaries: list[Summary]) -> None:
    console.print(f"[bold]{title}[/]")
    table = Table(box=None, pad_edge=False)
    columns = ("", "p50 ms", "p99 ms", "req/s", "added p50", "added p99", "req/s vs direct")
    for column in (*columns, "errors"):
        table.add_column(column, justify="left" if not column else "right")
    for s in summaries:
        direct = s.target is Target.DIRECT
        table.add_row(
            s.target.value,
            f"{s.p50_ms:.2f}",
            f"{s.p99_ms:.2f}",
            f"{s.requests_per_second:,.0f}",
            "" if direct else f"{s.added_p50_ms:+.2f} ms",
            "" if direct else f"{s.added_p99_ms:+.2f} ms",
            "" if direct else f"{s.rps_ratio:.2f}x",
            str(s.errors),
        )
    console.print(table)


def figures_of(saturating: list[Summary], serial: list[Summary]) -> list[Figure]:
    figures = []
    for load, summaries in (("1 conn", serial), ("saturating", saturating)):
        for s in summaries:
            if s.target is not Target.DIRECT:
                figures.append(Figure(f"{s.target}: added p50, {load}", s.added_p50_ms, "ms"))
                figures.append(Figure(f"{s.target}: added p99, {load}", s.added_p99_ms, "ms"))
    for s in saturating:
        if s.target is not Target.DIRECT:
            figures.append(Figure(f"{s.target}: max req/s vs direct", s.rps_ratio, "x"))
    return figures


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def measure(
    repeat: int,
    *,
    seconds: int = 5,
    connections: int = 16,
    upstream: Upstream = Upstream.HELLO,
    json_path: Path | None = None,
) -> list[Figure]:
    wrk = required_tool("wrk", "wrk")
    required_tool("haproxy", "haproxy")
    header(f"router overhead: direct, builtin, haproxy in front of one uvicorn ({upstream})")
    console.print(f"wrk -t1 -d{seconds}s on this machine; load average {load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-router-") as scratch:
        workdir = Path(scratch)
        with (
            running_upstream(upstream, workdir) as address,
            running_targets(address, workdir) as urls,
        ):
            results = collect(urls, repeat, seconds, connections, wrk)
    console.print(f"load average after: {load_average()}")
    saturating = summarize(results[Shape.SATURATING])
    serial = summarize(results[Shape.SERIAL])
    print_summary(f"{connections} connections, median of {repeat}", saturating)
    print_summary(f"1 connection, median of {repeat}", serial)
    figures = figures_of(saturating, serial)
    print_figures("router overhead", figures)
    if json_path is not None:
        document = {
            "connections": connections,
            "seconds": seconds,
            "repeat": repeat,
            "upstream": upstream.value,
            "saturating": [asdict(s) for s in saturating],
            "serial": [asdict(s) for s in serial],
            "rounds": {
                shape.value: {t.value: [asdict(r) for r in rs] for t, rs in per_target.items()}
                for shape, per_target in results.items()
            },
        }
        json_path.write_text(json.dumps(document, indent=2) + "\n")
    return figures


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = repeat_parser(__doc__ or "")
    parser.add_argument("--duration", type=_positive, default=5, help="seconds per wrk run")
    parser.add_argument(
        "--connections", type=_positive, default=16, help="connections of the saturating load"
    )
    parser.add_argument("--upstream", type=Upstream, choices=list(Upstream), default=Upstream.HELLO)
    parser.add_argument("--json", type=Path, help="also write the medians and rounds here")
    args = parser.parse_args(argv)
    try:
        measure(
            args.repeat,
            seconds=args.duration,
            connections=args.connections,
            upstream=args.upstream,
            json_path=args.json,
        )
    except KeyboardInterrupt:
        console.print("interrupted; the routers and the upstream are stopped")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
