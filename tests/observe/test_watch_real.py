"""The continuous watch on a real environment (a real builtin router and replicas under
the process runtime), and a real Prometheus that finds the routers' and releases' metrics
endpoints through the file-based service discovery the watch writes."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from analysis.prometheus_fixture import free_port, prometheus_binary
from conftest import wait_until
from conveyor.analysis.providers.prometheus import PrometheusProvider
from conveyor.observe.file_sd import FileSd
from conveyor.observe.watch import Health, Watcher
from conveyor.service import environments as envs
from conveyor.service.project import Project
from conveyor.spec.strategy import PrometheusQueries
from conveyor.store.store import Store
from deploy.apps import build_app, make_project
from servers import stop_server, wait_until_answering

pytestmark = [pytest.mark.real, pytest.mark.timeout(90)]

REQUESTS = (
    "sum(increase(conveyor_router_requests_total"
    '{{environment="{environment}",release="{release}"}}[{window}]))'
)
ERRORS = REQUESTS.replace('release="{release}"', 'release="{release}",code="5xx"')


@dataclass(frozen=True)
class Staging:
    project: Project
    store: Store
    live: str
    url: str
    admin_port: int


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[Staging]:
    project = make_project(tmp_path / "project", replicas=1, ready_timeout="10s")
    with project.open_store() as store:
        try:
            image = build_app(project, tmp_path, "v1")
            envs.deploy(project, store, "staging", image, actor="tester")
            record = store.ledger.environments.get("staging")
            assert record is not None and record.live_release is not None
            url = f"http://127.0.0.1:{record.port}"
            yield Staging(project, store, record.live_release, url, record.admin_port)
        finally:
            envs.stop_environment(project, store, "staging")


def send(url: str, count: int) -> None:
    with httpx.Client(base_url=url, timeout=5.0) as client:
        for _ in range(count):
            assert client.get("/").status_code == 200


def test_the_watch_samples_a_real_environment_then_skips_it_once_stopped(
    staging: Staging, tmp_path: Path
) -> None:
    sd_path = tmp_path / "sd" / "conveyor.json"
    watcher = Watcher(staging.project, staging.store, file_sd=FileSd(sd_path))
    start = time.time()
    first = watcher.tick()
    send(staging.url, 5)
    second = watcher.tick()

    assert first.sampled == second.sampled == {"staging": 1}
    rows = staging.store.ledger.samples.of("staging", staging.live, since=start)
    assert len(rows) == 2
    assert rows[1].signals["requests"] - rows[0].signals["requests"] == 5
    assert rows[1].saturation is not None and rows[1].saturation["memory_bytes"] > 0
    groups = json.loads(sd_path.read_text())
    runtime = envs.controller(staging.project, staging.store, "staging").target.runtime
    [replica] = [replica.address for replica in runtime.status(staging.live)]
    assert groups == [
        {
            "targets": [f"127.0.0.1:{staging.admin_port}"],
            "labels": {
                "environment": "staging",
                "component": "router",
                "__metrics_path__": "/-/metrics",
            },
        },
        {
            "targets": [replica],
            "labels": {
                "environment": "staging",
                "release": staging.live,
                "component": "release",
                "__metrics_path__": "/metrics",
            },
        },
    ]

    envs.stop_environment(staging.project, staging.store, "staging")
    stopped = watcher.tick()
    assert stopped.sampled == {}
    assert [(c.subject, c.health) for c in stopped.changes] == [("staging", Health.STOPPED)]
    watcher.lease.release()


def test_a_real_prometheus_scrapes_what_the_file_sd_lists(staging: Staging, tmp_path: Path) -> None:
    sd_path = tmp_path / "sd" / "conveyor.json"
    watcher = Watcher(staging.project, staging.store, file_sd=FileSd(sd_path))
    watcher.tick()
    watcher.lease.release()
    with prometheus_over(tmp_path / "prometheus", sd_path) as url:
        router = wait_until(
            lambda: target(url, "router", health="up"), "the router scraped", timeout=20
        )
        assert router["labels"]["environment"] == "staging"
        assert router["scrapeUrl"] == f"http://127.0.0.1:{staging.admin_port}/-/metrics"
        release = target(url, "release")
        assert release is not None and release["labels"]["release"] == staging.live

        # The existing Prometheus provider reads the router's counts by environment label.
        queries = PrometheusQueries(url=url, requests=REQUESTS, errors=ERRORS)
        provider = PrometheusProvider(queries, "staging", scrape_interval=1.0)
        provider.start([staging.live], latency_threshold=0.25)
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            send(staging.url, 5)
            time.sleep(0.1)
        reading = provider.read()[staging.live]
        assert reading.counts.requests > 10
        assert reading.counts.errors == 0


def target(url: str, component: str, health: str | None = None) -> dict[str, Any] | None:
    answer = httpx.get(f"{url}/api/v1/targets", timeout=5.0).json()
    for found in answer["data"]["activeTargets"]:
        wanted = health is None or found["health"] == health
        if found["labels"].get("component") == component and wanted:
            return dict(found)
    return None


@contextlib.contextmanager
def prometheus_over(workdir: Path, sd_path: Path) -> Iterator[str]:
    """A real Prometheus whose only scrape config reads `sd_path` (file_sd_configs)."""
    workdir.mkdir(parents=True)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "conveyor", "file_sd_configs": [{"files": [str(sd_path)]}]}
        ],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config))
    url = f"http://127.0.0.1:{free_port()}"
    command = [
        prometheus_binary(),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        "--log.level=warn",
    ]
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_until_answering(process, f"{url}/-/ready", "prometheus", log_path)
        yield url
    finally:
        stop_server(process)
