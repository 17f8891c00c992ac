"""An alert to traffic back on the warm release: v2 (answering 500 to every request) is
live in staging with v1 warm; an alert for staging is handed to Conveyor, and the time is
taken from that moment until the router answers with v1 (polled through the router's
public port every few milliseconds).

Two contenders, alternating, each on a fresh deploy of v2:
- Alertmanager's webhook delivery: the version 4 payload POSTed with a bearer token to a
  `conveyor server` subprocess (the issue's goal: <= 1 s);
- Conveyor's own evaluator path: `observe.alerts.receive` called in this process, as the
  SLO evaluator calls it. Detection (the burn-rate windows) is the evaluator's and comes
  before this;
- the whole built-in path, detection included: a second environment, `watched`, declares
  an availability SLO (99 %, `time_scale: 720`: the page's windows are 5 s and 0.4 s); the
  server's continuous watch (1 s) samples it, the SLO evaluator raises the page and the
  intake rolls back. Timed from the first 500 the bench sees from v2 (its own requests,
  every 2 ms, are the only traffic, so the error ratio is 100 % from the first sample
  that holds them) to the first answer from v1. The issue's goal for a burn-rate breach
  to traffic back is <= 2 s; this figure also holds the time from v2's first error to the
  breach (at most one sample).

    .venv/bin/python bench/alert_to_rollback.py --repeat 5
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from common import (
    PYTHON,
    Figure,
    alternate,
    clean_env,
    free_port,
    header,
    print_figures,
    print_samples,
)
from common import repeat_parser as _parser
from conveyor.approvals.users import add_user, issue_token, users_path
from conveyor.observe.alerts import Alert, AlertOutcome, AlertSource, AlertStatus, receive
from conveyor.service import environments
from conveyor.service.project import Project

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.deploy
from tests.deploy.apps import build_app, project_with_spec

WEBHOOK_GOAL = 1.0  # seconds, Alertmanager's delivery to traffic back (issue 16)
EVALUATOR_GOAL = 2.0  # seconds, a burn-rate breach to traffic back, detection included
SPEC = """\
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
  watched:
    replicas: 1
    drain: 0.2s
    health:
      readiness: {path: /healthz, interval: 100ms}
    alerts:
      bake: 1h
    slos:
      - {kind: availability, objective: 99, time_scale: 720}
"""


def start_server(project: Project, port: int) -> subprocess.Popen[bytes]:
    command = [
        PYTHON,
        "-m",
        "conveyor",
        "server",
        "--port",
        str(port),
        "-f",
        str(project.spec_path),
    ]
    server = subprocess.Popen(
        command, env=clean_env(), cwd=project.directory, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("conveyor server did not start")


def payload(fingerprint: str) -> dict[str, object]:
    now = datetime.now(UTC).isoformat()
    alert = {
        "status": "firing",
        "labels": {"alertname": "HighErrorRate", "environment": "staging"},
        "annotations": {"summary": "5xx"},
        "startsAt": now,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }
    return {"version": "4", "groupKey": "{}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "conveyor", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "", "alerts": [alert]}  # fmt: skip


class Bench:
    def __init__(self, project: Project, bad: str, server: str, token: str) -> None:
        self.project, self.bad = project, bad
        self.server, self.token = server, token
        self.store = project.open_store()
        self.routers = {name: self._router(name) for name in ("staging", "watched")}

    def _router(self, name: str) -> httpx.Client:
        record = self.store.ledger.environments.get(name)
        assert record is not None
        return httpx.Client(base_url=f"http://127.0.0.1:{record.port}", timeout=5)

    def serving(self, environment: str = "staging") -> str:
        try:
            return self.routers[environment].get("/").text
        except httpx.HTTPError:
            return ""

    def fresh_v2(self) -> None:
        environments.deploy(self.project, self.store, "staging", self.bad, actor="bench")
        while self.serving() != "injected fault":
            time.sleep(0.01)

    def by_watch(self) -> float:
        """Seconds from v2's first error seen to v1 serving, the server's watch deciding."""
        environments.deploy(self.project, self.store, "watched", self.bad, actor="bench")
        while self.serving("watched") != "injected fault":
            time.sleep(0.002)
        started = time.perf_counter()
        while self.serving("watched") != "v1":
            time.sleep(0.002)
        took = time.perf_counter() - started
        time.sleep(3.0)  # the page's short window clears: the alert resolves before the next
        return took

    def measure(self, send: Callable[[], None]) -> float:
        """Seconds from handing the alert over to the first answer from v1."""
        self.fresh_v2()
        started = time.perf_counter()
        sender = threading.Thread(target=send)
        sender.start()
        while self.serving() != "v1":
            time.sleep(0.002)
        took = time.perf_counter() - started
        sender.join()
        return took

    def by_webhook(self) -> float:
        def send() -> None:
            answer = httpx.post(
                f"{self.server}/api/v1/alerts/alertmanager",
                json=payload(uuid.uuid4().hex[:16]),
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=30,
            )
            outcome = answer.json()["alerts"][0]["outcome"]
            if outcome != "rolled-back":
                raise RuntimeError(f"the delivery did not roll back: {answer.text}")

        return self.measure(send)

    def by_receive(self) -> float:
        def send() -> None:
            alert = Alert(
                source=AlertSource.CONVEYOR,
                status=AlertStatus.FIRING,
                fingerprint=uuid.uuid4().hex[:16],
                labels={"environment": "staging", "slo": "availability", "severity": "page"},
                starts_at=time.time(),
            )
            with self.project.open_store() as store:
                if receive(self.project, store, alert) is not AlertOutcome.ROLLED_BACK:
                    raise RuntimeError("the alert did not roll back")

        return self.measure(send)


def main() -> None:
    parser = _parser("An alert to traffic back on the warm release, by webhook and in-process.")
    rounds = parser.parse_args().repeat
    header("Alert to rollback")
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as temp:
        project = project_with_spec(Path(temp) / "project", SPEC)
        good = build_app(project, Path(temp), "v1")
        bad = build_app(project, Path(temp), "v2", behaviour="errors-1.0")
        add_user(users_path(project.state_dir), "alertmanager", "am@example.org", ["developer"], [])
        now = datetime.now(UTC)
        token = issue_token(users_path(project.state_dir), "alertmanager", None, now).token
        with project.open_store() as store:
            environments.deploy(project, store, "staging", good, actor="bench")
            environments.deploy(project, store, "watched", good, actor="bench")
        port = free_port()
        server = start_server(project, port)
        bench = Bench(project, bad, f"http://127.0.0.1:{port}", token)
        try:
            bench.by_webhook()  # warm-up: the server's first request imports its modules
            bench.by_receive()
            samples = alternate(
                {
                    "Alertmanager webhook -> v1 serving": bench.by_webhook,
                    "receive() (own evaluator) -> v1 serving": bench.by_receive,
                    "watch + SLO evaluator, first error -> v1 serving": bench.by_watch,
                },
                rounds,
            )
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            with project.open_store() as store:
                environments.stop_environment(project, store, "staging")
                environments.stop_environment(project, store, "watched")
            bench.store.close()
    webhook, own, watched = samples.values()
    print_samples(
        "alert handed over (or v2's first error) -> the router answers from v1 (s)",
        [own, webhook, watched],
        own,
    )
    print_figures(
        "Alert to traffic back on the warm release",
        [
            Figure("Alertmanager webhook: median", webhook.median, "s", WEBHOOK_GOAL),
            Figure("Alertmanager webhook: max", max(webhook.seconds), "s", WEBHOOK_GOAL),
            Figure("receive() path: median (detection excluded)", own.median, "s", EVALUATOR_GOAL),
            Figure("receive() path: max", max(own.seconds), "s", EVALUATOR_GOAL),
            Figure("watch + evaluator (detected): median", watched.median, "s", EVALUATOR_GOAL),
            Figure("watch + evaluator (detected): max", max(watched.seconds), "s", EVALUATOR_GOAL),
        ],
    )


if __name__ == "__main__":
    main()
