"""A real Prometheus with an alerting rule and a real Alertmanager (apt `prometheus`,
`prometheus-alertmanager`; missing ones fail the test, never skip it), on free 127.0.0.1
ports with their data in a temp dir, stopped by pid."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from analysis.prometheus_fixture import free_port
from servers import stop_server, wait_until_answering


def binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: apt-get install -y {package}")
    return found


@contextlib.contextmanager
def started(command: list[str], ready: str, name: str, log_path: Path) -> Iterator[None]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_until_answering(process, ready, name, log_path)
        yield
    finally:
        stop_server(process)


def alertmanager_config(webhook: str, token: str) -> dict[str, Any]:
    """Route every alert at once to Conveyor's webhook with a bearer token."""
    return {
        "route": {
            "receiver": "conveyor",
            "group_by": ["alertname", "environment"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "conveyor",
                "webhook_configs": [
                    {
                        "url": webhook,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
                    }
                ],
            }
        ],
    }


@contextlib.contextmanager
def running_alertmanager(workdir: Path, webhook: str, token: str) -> Iterator[str]:
    """Alertmanager delivering to `webhook`; yields its host:port."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text(json.dumps(alertmanager_config(webhook, token)))
    address = f"127.0.0.1:{free_port()}"
    command = [
        binary("prometheus-alertmanager", "prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={address}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with started(command, f"http://{address}/-/ready", "alertmanager", workdir / "am.log"):
        yield address


@contextlib.contextmanager
def running_prometheus(
    workdir: Path, target: str, metrics_path: str, rules: Mapping[str, Any], alertmanager: str
) -> Iterator[str]:
    """Prometheus scraping `target` every second, evaluating `rules` every second and
    sending what fires to `alertmanager`; yields its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rules.yml").write_text(json.dumps(rules))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(workdir / "rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {
                "job_name": "router",
                "metrics_path": metrics_path,
                "static_configs": [{"targets": [target]}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config))
    url = f"http://127.0.0.1:{free_port()}"
    command = [
        binary("prometheus", "prometheus"),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        "--log.level=warn",
    ]
    with started(command, f"{url}/-/ready", "prometheus", workdir / "prometheus.log"):
        yield url


def error_rate_rule(environment: str) -> dict[str, Any]:
    """Fires as soon as a release of the router answers any 5xx (per release)."""
    expression = 'sum by (release) (increase(conveyor_router_requests_total{code="5xx"}[3s])) > 0'
    return {
        "groups": [
            {
                "name": "conveyor",
                "interval": "1s",
                "rules": [
                    {
                        "alert": "HighErrorRate",
                        "expr": expression,
                        "labels": {"environment": environment, "severity": "page"},
                        "annotations": {"summary": "{{ $labels.release }} answers 5xx"},
                    }
                ],
            }
        ]
    }
