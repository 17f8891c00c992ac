"""Two `conveyor server` processes on one PostgreSQL: the one driving a canary (its queued
run's process deploys) is killed with SIGKILL, with everything it started. The other
adopts the deploy at the step its progress records, within seconds; traffic through the
router never fails; nothing starts twice; the run, queued again, takes the adopted
deploy's outcome instead of deploying a second time."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from conftest import CliProcess, GitProject, MakeProject, wait_until
from conveyor.approvals.users import add_user, issue_token, users_path
from conveyor.deploy.rollout import baseline_name
from conveyor.deploy.runtimes.process import ProcessRuntime
from conveyor.service import environments
from conveyor.service.images import image_store
from conveyor.service.releases import release_status
from conveyor.states import DeployState, JobState, RunState
from conveyor.store import Store, queue
from conveyor.store.ledger import DeployRecord
from conveyor.store.records import EventKind, RunRecord
from deploy.apps import CANARY_PIPELINE, app_source
from deploy.load import Load
from deploy.test_reliability import supervisors_of
from pg_server import PostgresServer
from servers import answers_health, free_port

pytestmark = [pytest.mark.real, pytest.mark.timeout(300)]

SPEC = CANARY_PIPELINE.format(pause="8s")
FAILOVER_GOAL_SECONDS = 5.0


@pytest.fixture
def shared_database(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Every process of the test (this one, both servers) on one PostgreSQL database."""
    url = postgres_server.url(postgres_server.new_database())
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", url)
    yield url


@pytest.fixture
def shop(git_project: MakeProject, shared_database: str) -> Iterator[GitProject]:
    """The project with v1 live in staging (a run in this process), stopped at the end."""
    project = git_project(SPEC, files=app_source("v1"))
    assert project.run().state is RunState.SUCCESS
    yield project
    with open_store(project) as store:
        environments.stop_environment(project.project(), store, "staging")


class Servers:
    def __init__(
        self, project: GitProject, start_cli: Callable[..., CliProcess], database: str
    ) -> None:
        self.project = project
        self.start_cli = start_cli
        self.environ = {"CONVEYOR_DATABASE_URL": database}

    def start(self) -> tuple[CliProcess, str]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = ["server", "--port", str(port), "--workers", "1"]
        server = self.start_cli(args, self.project.root, self.environ)
        wait_until(lambda: answers_health(url), "the server to answer")
        return server, url


def in_progress(project: GitProject) -> DeployRecord | None:
    with open_store(project) as store:
        found = store.ledger.deploys.of_environment("staging", DeployState.IN_PROGRESS)
    return found[-1] if found else None


def at_pause(project: GitProject) -> bool:
    with open_store(project) as store:
        status = release_status(project.project(), store, "staging")
    return status.in_progress and status.progress is not None and status.progress.step == 1


def test_a_canary_whose_server_is_killed_is_adopted_by_the_other(
    shop: GitProject, shared_database: str, start_cli: Callable[..., CliProcess]
) -> None:
    project, state = shop.project(), shop.project().state_dir
    add_user(users_path(state), "dev", "dev@example.org", ["developer"], [])
    token = issue_token(users_path(state), "dev", None, datetime.now(UTC)).token
    shop.commit(app_source("v2"), "v2")
    servers = Servers(shop, start_cli, shared_database)
    first, first_url = servers.start()
    answer = httpx.post(
        f"{first_url}/api/v1/runs", json={}, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 202, answer.text
    queue_id = answer.json()["queue_id"]

    wait_until(lambda: at_pause(shop), "the canary to reach its pause", timeout=120)
    driving = in_progress(shop)
    assert driving is not None
    second, _ = servers.start()  # a standby: the lock is held, it adopts nothing yet
    time.sleep(1.5)
    standing = in_progress(shop)
    assert standing is not None and (standing.id, standing.pid) == (driving.id, driving.pid)
    with open_store(shop) as store:
        environment = store.ledger.environments.get("staging")
    assert environment is not None
    runtime = ProcessRuntime(state / "runtime", image_store(project))
    supervisors = supervisors_of(runtime, driving.release_id)

    with Load(f"http://127.0.0.1:{environment.port}") as load:
        time.sleep(0.5)
        killed_at = time.time()
        first.kill_group()  # the server, its fork server and the run's process
        first.popen.wait()
        adopted = wait_until(lambda: resumed_event(shop, driving.id), "the other to adopt")
        wait_until(lambda: finished(shop, driving.id), "the adopted canary to end", timeout=60)
        time.sleep(0.5)
        answers = load.stop()

    failover = adopted - killed_at
    assert failover <= FAILOVER_GOAL_SECONDS, f"adopted {failover:.2f} s after the kill"
    assert [a.failure for a in answers if a.failure] == []
    assert {"v1", "v2"} <= {a.version for a in answers}
    with open_store(shop) as store:
        record = store.ledger.deploys.get(driving.id)
        steps = [
            e.data["step"]
            for e in store.ledger.history.events("staging", (EventKind.RELEASE_STEP,))
            if e.data["deploy_id"] == driving.id
        ]
        deploys_of_v2 = [
            d
            for d in store.ledger.deploys.of_environment("staging")
            if d.release_id == driving.release_id
        ]
    assert record.state is DeployState.SUCCEEDED, record.reason
    assert record.pid == second.pid  # the second server carried it on
    assert steps == [0, 1, 1, 2, 3]  # adopted at its pause, not from the start
    # Nothing started twice: one deploy, the same supervisor, the baseline stopped once.
    assert deploys_of_v2 == [record]
    assert supervisors_of(runtime, driving.release_id) == supervisors
    assert baseline_name(environment.live_release or "") not in runtime.releases()

    rerun = wait_until(lambda: rerun_done(shop, queue_id), "the run queued again to end")
    assert rerun.state is RunState.SUCCESS
    with open_store(shop) as store:
        jobs = {job.job_id: job for job in store.get_jobs(rerun.id)}
        deploys_after = store.ledger.deploys.of_environment("staging")
    assert jobs["deploy"].state is JobState.SUCCESS
    assert [d.id for d in deploys_after if d.release_id == driving.release_id] == [driving.id]
    second.popen.send_signal(signal.SIGINT)
    assert second.finish() == 0


def resumed_event(project: GitProject, deploy_id: int) -> float | None:
    """When the deploy was adopted (epoch seconds), once it was."""
    with open_store(project) as store:
        for event in store.ledger.history.events("staging", (EventKind.DEPLOY_RESUMED,)):
            if event.data.get("deploy_id") == deploy_id:
                return event.ts
    return None


def finished(project: GitProject, deploy_id: int) -> bool:
    with open_store(project) as store:
        return store.ledger.deploys.get(deploy_id).state is not DeployState.IN_PROGRESS


def rerun_done(project: GitProject, queue_id: int) -> RunRecord | None:
    with open_store(project) as store:
        entry = queue.get(store.engine, queue_id)
        if entry is None or entry.state is not queue.QueueState.DONE or entry.run_id is None:
            return None
        return store.get_run(entry.run_id)


def open_store(project: GitProject) -> Store:
    """The shared database, without what `Project.open_store` also does (recovery)."""
    opened = project.project()
    return Store(opened.state_dir, opened.database_url)
