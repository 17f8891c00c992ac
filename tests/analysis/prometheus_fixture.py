"""A real Prometheus server for tests: `running_prometheus` and the `prometheus` fixture.

`running_prometheus(workdir, targets)` starts `/usr/bin/prometheus` (apt `prometheus`,
a declared dependency of the test suite: a machine without it fails, it does not skip)
on a free 127.0.0.1 port, with a generated configuration scraping `targets` every
`scrape_interval` seconds and its storage in `workdir`, waits for `/-/ready`, yields a
`PrometheusServer` and stops the process by pid. Prometheus hands new targets to its
scrapers in 5-second batches, so the first scrape comes about 5 s after the start
(`PrometheusServer.wait_for_scrape_after` waits for it). The `prometheus` fixture is a factory
around it that stops every server it started at teardown.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import stop_server, wait_until_answering

SCRAPE_WAIT_SECONDS = 15.0

StartPrometheus = Callable[..., "PrometheusServer"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class PrometheusServer:
    url: str  # http://127.0.0.1:PORT
    scrape_interval: float
    log_path: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector `promql` evaluates to now."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5.0)
        body: dict[str, Any] = answer.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def last_scrape(self) -> float | None:
        """When the least recently scraped target was last scraped (epoch seconds)."""
        result = self.query("min(timestamp(up == 1))")
        return float(result[0]["value"][1]) if result else None

    def wait_for_scrape_after(self, moment: float) -> float:
        """Block until every target has been scraped after `moment`; returns that scrape's
        time. A scrape reads counters as they were when it started."""
        deadline = time.monotonic() + SCRAPE_WAIT_SECONDS
        while time.monotonic() < deadline:
            scraped = self.last_scrape()
            if scraped is not None and scraped > moment:
                return scraped
            time.sleep(self.scrape_interval / 10)
        pytest.fail(f"Prometheus scraped nothing after {moment}: {self.log_path.read_text()}")


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: apt-get install -y prometheus")
    return binary


@contextlib.contextmanager
def running_prometheus(
    workdir: Path,
    targets: Sequence[str],
    *,
    metrics_path: str = "/metrics",
    scrape_interval: float = 1.0,
) -> Iterator[PrometheusServer]:
    """A Prometheus scraping `targets` (host:port) at `metrics_path`, stopped on exit."""
    binary = prometheus_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps(_config(targets, metrics_path, scrape_interval)))
    port = free_port()
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    server = PrometheusServer(f"http://127.0.0.1:{port}", scrape_interval, log_path)
    try:
        wait_until_answering(process, f"{server.url}/-/ready", "prometheus", server.log_path)
        yield server
    finally:
        stop_server(process)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[StartPrometheus]:
    """`prometheus(targets, metrics_path=..., scrape_interval=...)` -> a running server."""
    with contextlib.ExitStack() as servers:
        counter = iter(range(1, 1000))

        def start(
            targets: Sequence[str], *, metrics_path: str = "/metrics", scrape_interval: float = 1.0
        ) -> PrometheusServer:
            workdir = tmp_path / f"prometheus{next(counter)}"
            return servers.enter_context(
                running_prometheus(
                    workdir, targets, metrics_path=metrics_path, scrape_interval=scrape_interval
                )
            )

        yield start


def _config(targets: Sequence[str], metrics_path: str, scrape_interval: float) -> dict[str, Any]:
    interval = f"{round(scrape_interval * 1000)}ms"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [
            {
                "job_name": "targets",
                "metrics_path": metrics_path,
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
