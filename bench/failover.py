"""Failover of a canary's control plane: two `conveyor server` processes share a project;
the one whose queued run drives a canary is killed with SIGKILL (its process group: the
server, its fork server and the run's process), and the time is taken from the kill to
the other server adopting the deploy (its DEPLOY_RESUMED event). Meanwhile clients send
requests through the environment's router; every failed request is counted.

Side by side, alternating: the two servers on SQLite (one machine, an fcntl lock per
environment) and on PostgreSQL (a session advisory lock; a real PostgreSQL 15 started
for the run, as the tests start it). The issue's goal: adopted within 5 s, no failed
request.

    .venv/bin/python bench/failover.py --repeat 3
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx

from common import Figure, Samples, clean_env, free_port, header, print_figures, print_samples
from common import repeat_parser as _parser
from conveyor.approvals.users import add_user, issue_token, users_path
from conveyor.service import environments
from conveyor.service.project import Project
from conveyor.states import DeployState
from conveyor.store import Store
from conveyor.store.records import EventKind

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.*
from tests.deploy.apps import CANARY_PIPELINE, app_source
from tests.pg_server import PostgresServer, start_server

GOAL_SECONDS = 5.0
T = TypeVar("T")
BASE_CACHE = Path(tempfile.gettempdir()) / "conveyor-bench-python-base"
SPEC = CANARY_PIPELINE.format(pause="6s")
GIT = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.org",
}


@dataclass
class Traffic:
    """GET / through the router from a few threads until stopped; failures counted."""

    url: str
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Traffic:
        for _ in range(3):
            thread = threading.Thread(target=self._send, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _send(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                client.cookies.clear()
                try:
                    answer = client.get(self.url)
                    if answer.status_code >= 500:
                        self.failures.append(f"{answer.status_code} {answer.text[:80]}")
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                self.requests += 1
                time.sleep(0.01)


class Shop:
    """A repository whose staging runs a canary per commit, on one backend."""

    def __init__(self, root: Path, database_url: str | None) -> None:
        self.root = root
        self.env = clean_env(CONVEYOR_BASE_CACHE=str(BASE_CACHE), **GIT)
        if database_url is not None:
            self.env["CONVEYOR_DATABASE_URL"] = database_url
        self.database_url = database_url
        self.versions = 0
        root.mkdir(parents=True)
        self._git("init", "-q", "-b", "main")
        (root / "conveyor.yml").write_text(SPEC)
        self.commit()
        subprocess.run(
            [sys.executable, "-m", "conveyor", "run"], cwd=root, env=self.env, check=True,
            capture_output=True,
        )  # fmt: skip
        self.project = Project.locate(root / "conveyor.yml")
        users = users_path(self.project.state_dir)
        add_user(users, "dev", "dev@example.org", ["developer"], [])
        self.token = issue_token(users, "dev", None, datetime.now(UTC)).token

    def _git(self, *args: str) -> None:
        subprocess.run(["git", "-C", str(self.root), *args], check=True, env=self.env)

    def commit(self) -> None:
        self.versions += 1
        for name, text in app_source(f"v{self.versions}").items():
            (self.root / name).parent.mkdir(exist_ok=True)
            (self.root / name).write_text(text)
        self._git("add", "-A")
        self._git("commit", "-q", "-m", f"v{self.versions}")

    @contextlib.contextmanager
    def store(self) -> Iterator[Store]:
        with Store(self.project.state_dir, self.database_url) as opened:
            yield opened

    def server(self) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "server", "--port", str(port), "--workers", "1"],
            cwd=self.root, env=self.env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait(lambda: _answers(url), "the server to answer")
        return server, url

    def canary_at_pause(self) -> int | None:
        with self.store() as store:
            found = store.ledger.deploys.of_environment("staging", DeployState.IN_PROGRESS)
        if found and found[-1].progress and found[-1].progress.get("step") == 1:
            return found[-1].id
        return None

    def adopted_at(self, deploy_id: int) -> float | None:
        with self.store() as store:
            for event in store.ledger.history.events("staging", (EventKind.DEPLOY_RESUMED,)):
                if event.data.get("deploy_id") == deploy_id:
                    return event.ts
        return None

    def finished(self, deploy_id: int) -> DeployState | None:
        with self.store() as store:
            state = store.ledger.deploys.get(deploy_id).state
        return None if state is DeployState.IN_PROGRESS else state

    def router_url(self) -> str:
        with self.store() as store:
            record = store.ledger.environments.get("staging")
        assert record is not None
        return f"http://127.0.0.1:{record.port}/"

    def stop(self) -> None:
        with self.store() as store:
            environments.stop_environment(self.project, store, "staging")


@dataclass
class Round:
    seconds: float
    requests: int
    failures: list[str]


def one_failover(shop: Shop) -> Round:
    shop.commit()
    driver, url = shop.server()
    standby: subprocess.Popen[bytes] | None = None
    try:
        answer = httpx.post(
            f"{url}/api/v1/runs", json={}, headers={"Authorization": f"Bearer {shop.token}"}
        )
        answer.raise_for_status()
        deploy_id = wait(shop.canary_at_pause, "the canary to reach its pause", 180)
        standby, _ = shop.server()
        with Traffic(shop.router_url()) as traffic:
            # At a random phase of the standby's 1 s poll: a fixed delay after its start
            # would measure one phase only.
            time.sleep(random.uniform(0.5, 1.5))
            killed_at = time.time()
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
            adopted = wait(lambda: shop.adopted_at(deploy_id), "the standby to adopt")
            state = wait(lambda: shop.finished(deploy_id), "the adopted canary to end", 60)
            time.sleep(0.5)
        if state is not DeployState.SUCCEEDED:
            raise RuntimeError(f"the adopted canary ended {state}")
        return Round(adopted - killed_at, traffic.requests, traffic.failures)
    finally:
        for process in (driver, standby):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)


def wait(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    return False


def main() -> None:
    parser = _parser("Failover of a canary's control plane: SIGKILL to adoption.")
    rounds = parser.parse_args().repeat
    header("Canary failover between two servers")
    postgres: PostgresServer = start_server()
    samples = {name: Samples(name) for name in ("SQLite (fcntl)", "PostgreSQL (session lock)")}
    requests = dict.fromkeys(samples, 0)
    failures: dict[str, list[str]] = {name: [] for name in samples}
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as temp:
        shops = {
            "SQLite (fcntl)": Shop(Path(temp) / "sqlite", None),
            "PostgreSQL (session lock)": Shop(
                Path(temp) / "postgres", postgres.url(postgres.new_database())
            ),
        }
        try:
            for _ in range(rounds):
                for name, shop in shops.items():
                    measured = one_failover(shop)
                    samples[name].seconds.append(measured.seconds)
                    requests[name] += measured.requests
                    failures[name] += measured.failures
        finally:
            for shop in shops.values():
                shop.stop()
            postgres.stop()
    print_samples("SIGKILL of the driving server -> the other adopts the canary (s)",
                  list(samples.values()), None)  # fmt: skip
    figures = []
    for name, sample in samples.items():
        figures.append(Figure(f"{name}: median", sample.median, "s", GOAL_SECONDS))
        figures.append(Figure(f"{name}: max", max(sample.seconds), "s", GOAL_SECONDS))
        figures.append(Figure(f"{name}: failed requests of {requests[name]}",
                              len(failures[name]), "", 0))  # fmt: skip
    print_figures("Failover", figures)
    for name, found in failures.items():
        for failure in found[:5]:
            print(f"{name}: {failure}")


if __name__ == "__main__":
    main()
