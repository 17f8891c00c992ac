"""Shared by the end-to-end alert tests: staging with a bad release live over a warm good
one, and traffic through its router while an alert rolls it back."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import httpx

from conveyor.service import environments
from deploy.apps import build_app
from server.conftest import ServerUnderTest

# staging, one replica, a bake window that any alert in the test falls in; a test appends
# what it needs (its SLOs) under `staging:`.
STAGING_SPEC = """\
version: 1
name: shop
jobs:
  noop: {run: 'true'}
environments:
  staging:
    replicas: 1
    drain: 0.2s
    health:
      readiness: {path: /healthz, interval: 100ms}
    alerts:
      bake: 1h
"""


class Traffic:
    """GET / through the router every 20 ms; keeps the last body."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.last = ""
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self.stopped.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    self.last = client.get(self.url).text
                time.sleep(0.02)


def live_release(served: ServerUnderTest, environment: str = "staging") -> str | None:
    record = served.context.store.ledger.environments.get(environment)
    return record.live_release if record else None


def bad_over_good(served: ServerUnderTest, tmp_path: Path) -> tuple[str, str, Traffic]:
    """v1 deployed, then v2 (every answer a 500) live over it; traffic started on staging's
    router. Returns (v1, v2, traffic); stop the traffic when done."""
    project, store = served.context.project, served.context.store
    good = build_app(project, tmp_path / "v1", "v1")
    bad = build_app(project, tmp_path / "v2", "v2", behaviour="errors-1.0")
    v1 = environments.deploy(project, store, "staging", good, actor="dana").release_id
    v2 = environments.deploy(project, store, "staging", bad, actor="dana").release_id
    record = store.ledger.environments.get("staging")
    assert record is not None and record.live_release == v2
    traffic = Traffic(f"http://127.0.0.1:{record.port}/")
    traffic.thread.start()
    return v1, v2, traffic
