"""Environments through the service layer, with real replicas and a real builtin router.

Every test gets a fresh project (staging with one replica and a `/smoke` check, production
after staging) whose environments are stopped at teardown, so no router or replica
outlives its test. Images are built per project: the tiny app builds in milliseconds.
"""

from __future__ import annotations

import fcntl
import http.client
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import wait_until
from conveyor.deploy.model import ReplicaState
from conveyor.deploy.rollout import DeployOutcome, release_name
from conveyor.deploy.routing import free_ports, version_of
from conveyor.deploy.runtimes.base import Runtime
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.service import environments as envs
from conveyor.service.project import Project
from conveyor.states import DeployState, ReleaseState
from conveyor.store.ledger import DeployLedger
from conveyor.store.procs import ProcessIdentity
from conveyor.store.records import EventKind
from conveyor.store.store import Store
from deploy.apps import build_app, make_project

ENVIRONMENTS = ("staging", "production")
ACTOR = "tester"


@dataclass(frozen=True)
class Setup:
    project: Project
    store: Store
    root: Path

    def build(self, version: str, behaviour: str = "ok") -> str:
        return build_app(self.project, self.root, version, behaviour)

    def deploy(self, image: str, environment: str = "staging") -> DeployOutcome:
        return envs.deploy(self.project, self.store, environment, image, actor=ACTOR)

    def runtime(self, environment: str = "staging") -> Runtime:
        return envs.controller(self.project, self.store, environment).target.runtime

    def running(self) -> set[str]:
        return set(self.runtime().releases())

    def release_state(self, release_id: str) -> ReleaseState:
        release = self.store.ledger.releases.get(release_id)
        assert release is not None, f"{release_id} is not in the ledger"
        return release.state


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    project = make_project(tmp_path / "project", replicas=1, ready_timeout="10s")
    with project.open_store() as store:
        try:
            yield Setup(project, store, tmp_path)
        finally:
            for name in ENVIRONMENTS:
                envs.stop_environment(project, store, name)


def release_of(image: str, environment: str = "staging") -> str:
    repository, digest = image.split("@")
    return release_name(environment, repository, digest)


def version_pin(image: str) -> dict[str, str]:
    return {"X-Conveyor-Version": version_of(image.split("@")[1])}


def answers(url: str, count: int = 1, headers: dict[str, str] | None = None) -> list[str]:
    """The bodies of `count` independent requests, a few at a time: a new connection each
    and no sticky cookie, so the router picks a release for every one of them."""
    address = urlsplit(url)
    host, port = str(address.hostname), int(address.port or 80)

    def fetch(_: int) -> str:
        connection = http.client.HTTPConnection(host, port, timeout=5.0)
        try:
            connection.request("GET", "/", headers=headers or {})
            return connection.getresponse().read().decode()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        return list(pool.map(fetch, range(count)))


# --- deploys --------------------------------------------------------------------------


@pytest.mark.real
def test_first_deploy_goes_live_behind_the_router(setup: Setup) -> None:
    v1 = setup.build("v1")

    outcome = setup.deploy(v1)

    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    assert outcome.release_id == release_of(v1)
    assert answers(outcome.url, 3) == ["v1"] * 3
    environment = setup.store.ledger.environments.get("staging")
    assert environment is not None
    assert environment.live_release == outcome.release_id
    assert environment.warm_release is None
    assert setup.release_state(outcome.release_id) is ReleaseState.LIVE


@pytest.mark.real
def test_deploys_keep_the_previous_release_warm_and_retire_the_one_before(
    setup: Setup,
) -> None:
    v1, v2, v3 = setup.build("v1"), setup.build("v2"), setup.build("v3")
    setup.deploy(v1)

    url = setup.deploy(v2).url

    assert answers(url, 20) == ["v2"] * 20
    assert release_of(v1) in setup.running()
    assert setup.release_state(release_of(v1)) is ReleaseState.WARM
    assert answers(url, 3, headers=version_pin(v1)) == ["v1"] * 3

    assert setup.deploy(v3).state is DeployState.SUCCEEDED
    assert setup.running() == {release_of(v2), release_of(v3)}
    assert setup.release_state(release_of(v1)) is ReleaseState.RETIRED
    assert setup.release_state(release_of(v2)) is ReleaseState.WARM
    assert answers(url, 3, headers=version_pin(v2)) == ["v2"] * 3


@pytest.mark.real
def test_a_failing_smoke_test_rolls_back_to_the_previous_release(setup: Setup) -> None:
    v1, bad = setup.build("v1"), setup.build("v2", "bad-smoke")
    setup.deploy(v1)

    outcome = setup.deploy(bad)

    assert outcome.state is DeployState.ROLLED_BACK
    assert outcome.reason is not None and "GET /smoke" in outcome.reason
    assert answers(outcome.url, 50) == ["v1"] * 50
    assert release_of(bad) not in setup.running()
    assert setup.release_state(release_of(bad)) is ReleaseState.FAILED
    history = envs.history(setup.project, setup.store, "staging")
    assert [(h.kind, h.release_id, h.result) for h in history] == [
        ("deploy", release_of(v1), "succeeded"),
        ("deploy", release_of(bad), "rolled_back"),
        ("rollback", release_of(v1), "switched"),
    ]


@pytest.mark.real
def test_a_release_that_crashes_at_start_never_gets_traffic(setup: Setup) -> None:
    v1, crash = setup.build("v1"), setup.build("v2", "crash")
    url = setup.deploy(v1).url

    outcome = setup.deploy(crash)

    assert outcome.state is DeployState.FAILED
    assert outcome.reason is not None and "crashed at start" in outcome.reason
    shifts = setup.store.ledger.history.events("staging", (EventKind.TRAFFIC_SHIFTED,))
    assert shifts, "the deploys shifted no traffic at all"
    assert all(e.data["weights"].get(outcome.release_id, 0) == 0 for e in shifts)
    assert answers(url, 20) == ["v1"] * 20
    assert outcome.release_id not in setup.running()


@pytest.mark.real
def test_production_accepts_only_digests_deployed_to_staging(setup: Setup) -> None:
    v1 = setup.build("v1")

    with pytest.raises(ConveyorError, match="staging") as refused:
        setup.deploy(v1, "production")
    assert refused.value.hint is not None and "conveyor deploy staging" in refused.value.hint
    assert setup.store.ledger.environments.get("production") is None

    assert setup.deploy(v1).state is DeployState.SUCCEEDED
    production = setup.deploy(v1, "production")
    assert production.state is DeployState.SUCCEEDED, production.reason
    assert answers(production.url) == ["v1"]


# --- rollback -------------------------------------------------------------------------


@pytest.mark.real
def test_rollback_switches_to_the_warm_release_at_once(setup: Setup) -> None:
    v1, v2 = setup.build("v1"), setup.build("v2")
    setup.deploy(v1)
    setup.deploy(v2)

    outcome = envs.rollback(setup.project, setup.store, "staging", actor=ACTOR)

    assert (outcome.from_release, outcome.to_release) == (release_of(v2), release_of(v1))
    assert outcome.switch_seconds < 1.0  # the requirement for a warm rollback
    assert answers(outcome.url, 50) == ["v1"] * 50
    assert setup.running() == {release_of(v1)}
    assert setup.release_state(release_of(v2)) is ReleaseState.FAILED


@pytest.mark.real
def test_rollback_to_a_retired_release_starts_it_cold(setup: Setup) -> None:
    v1, v2, v3 = setup.build("v1"), setup.build("v2"), setup.build("v3")
    for image in (v1, v2, v3):
        setup.deploy(image)
    assert release_of(v1) not in setup.running()

    outcome = envs.rollback(setup.project, setup.store, "staging", actor=ACTOR, to=release_of(v1))

    assert outcome.to_release == release_of(v1)
    assert answers(outcome.url, 20) == ["v1"] * 20
    environment = setup.store.ledger.environments.get("staging")
    assert environment is not None and environment.live_release == release_of(v1)
    kept = {r for r in (environment.live_release, environment.warm_release) if r is not None}
    assert setup.running() <= kept, (
        "PRODUCT BUG (controller.rollback sets warm=None): the warm release "
        f"{release_of(v2)} keeps running untracked after `rollback --to`; running "
        f"{sorted(setup.running())}, ledger live/warm {sorted(kept)}"
    )


@pytest.mark.real
def test_rollback_without_a_previous_release_is_a_clear_error(setup: Setup) -> None:
    setup.deploy(setup.build("v1"))

    with pytest.raises(ConveyorError, match="no previous release") as error:
        envs.rollback(setup.project, setup.store, "staging", actor=ACTOR)
    assert error.value.hint is not None and "--to" in error.value.hint


def routes_of(setup: Setup, environment: str) -> object:
    return envs.controller(setup.project, setup.store, environment).target.router.routes()


@pytest.mark.real
def test_rollback_to_a_release_of_another_environment_is_refused(setup: Setup) -> None:
    """The attack: `rollback production --to staging-app-<digest>` made a staging release
    that failed its smoke test production's live release, with no approval, promotion
    order or smoke test. A rollback only goes back to a release that was live there."""
    v1, bad = setup.build("v1"), setup.build("v2", "bad-smoke")
    setup.deploy(v1)
    url = setup.deploy(v1, "production").url
    assert setup.deploy(bad).state is DeployState.ROLLED_BACK
    before = (setup.store.ledger.environments.get("production"), routes_of(setup, "production"))
    events = len(setup.store.ledger.history.events("production"))

    for staging_release in (release_of(bad), release_of(v1)):  # failed, and succeeded there
        with pytest.raises(ConveyorError, match="never live in production") as refused:
            envs.rollback(setup.project, setup.store, "production", actor=ACTOR, to=staging_release)
        assert refused.value.hint is not None
        assert "conveyor deploy production" in refused.value.hint

    after = (setup.store.ledger.environments.get("production"), routes_of(setup, "production"))
    assert after == before
    assert len(setup.store.ledger.history.events("production")) == events
    assert setup.release_state(release_of(bad)) is ReleaseState.FAILED
    assert release_of(bad) not in setup.running()
    assert answers(url, 10) == ["v1"] * 10


@pytest.mark.real
def test_rollback_to_a_release_that_was_never_live_here_is_refused(setup: Setup) -> None:
    v1, bad = setup.build("v1"), setup.build("v2", "bad-smoke")
    url = setup.deploy(v1).url
    assert setup.deploy(bad).state is DeployState.ROLLED_BACK
    before = setup.store.ledger.environments.get("staging")

    with pytest.raises(ConveyorError, match="never live in staging"):
        envs.rollback(setup.project, setup.store, "staging", actor=ACTOR, to=release_of(bad))
    with pytest.raises(ConveyorError, match="never live in staging"):
        envs.rollback(setup.project, setup.store, "staging", actor=ACTOR, to="staging-nothing")

    assert setup.store.ledger.environments.get("staging") == before
    assert setup.running() == {release_of(v1)}
    assert answers(url, 10) == ["v1"] * 10


@pytest.mark.real
def test_a_deploy_after_env_stop_neither_routes_to_nor_keeps_the_stopped_release(
    setup: Setup,
) -> None:
    """After `env stop`, the live release in the ledger is not running: a deploy gave it
    the traffic while the new release got ready (502s) and recorded it warm."""
    v1, v2 = setup.build("v1"), setup.build("v2")
    setup.deploy(v1)
    envs.stop_environment(setup.project, setup.store, "staging")

    outcome = setup.deploy(v2)

    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    record = setup.store.ledger.deploys.get(outcome.deploy_id or 0)
    assert record.previous_release is None
    shifts = [
        e.data["weights"]
        for e in setup.store.ledger.history.events("staging", (EventKind.TRAFFIC_SHIFTED,))
        if e.data["deploy_id"] == record.id
    ]
    assert shifts and all(release_of(v1) not in weights for weights in shifts), shifts
    environment = setup.store.ledger.environments.get("staging")
    assert environment is not None
    assert (environment.live_release, environment.warm_release) == (release_of(v2), None)
    assert setup.release_state(release_of(v1)) is ReleaseState.RETIRED
    assert setup.running() == {release_of(v2)}
    assert answers(outcome.url, 10) == ["v2"] * 10


def dead_process() -> ProcessIdentity:
    """The identity of a process that has exited: a controller SIGKILLed earlier."""
    process = subprocess.Popen(["true"])
    process.wait()
    return ProcessIdentity(pid=process.pid, host=socket.gethostname())


@pytest.mark.real
def test_reconcile_finishes_a_deploy_sent_back_before_its_controller_died(setup: Setup) -> None:
    """Killed between sending traffic back (v2 failed, in the same transaction) and finishing
    the deploy, the controller left it in progress: reconcile resumed it and v2, which
    the ledger had failed, went live after all."""
    v1, v2 = setup.build("v1"), setup.build("v2")
    url = setup.deploy(v1).url
    ghost = DeployLedger.over(setup.store.engine, dead_process())
    repository, digest = v2.split("@")
    record = ghost.deploys.begin(
        "staging",
        release_id=release_of(v2),
        repository=repository,
        digest=digest,
        ports=free_ports(1),
        previous=release_of(v1),
        actor=ACTOR,
        run_id=None,
    )
    envs.controller(setup.project, setup.store, "staging").start_release(release_of(v2))
    environment = setup.store.ledger.environments.get("staging")
    assert environment is not None
    ghost.environments.set_intent(  # what send_back records: all traffic back on v1, v2 failed
        "staging",
        routes=environment.routes,
        live=release_of(v1),
        warm=None,
        event=EventKind.ROLLBACK,
        actor="conveyor",
        data={"deploy_id": record.id, "from": release_of(v2), "reason": "smoke tests failed"},
        release_states={release_of(v2): ReleaseState.FAILED},
    )
    assert release_of(v2) in setup.running()

    outcome = envs.reconcile(setup.project, setup.store, "staging")

    assert outcome is not None
    assert (outcome.state, outcome.reason) == (DeployState.ROLLED_BACK, "smoke tests failed")
    assert setup.store.ledger.deploys.get(record.id).state is DeployState.ROLLED_BACK
    assert setup.release_state(release_of(v2)) is ReleaseState.FAILED
    assert setup.running() == {release_of(v1)}
    assert answers(url, 10) == ["v1"] * 10


# --- health, status and signals -------------------------------------------------------


@pytest.mark.real
def test_a_killed_replica_is_restarted_and_its_exit_recorded(setup: Setup) -> None:
    release_id = setup.deploy(setup.build("v1")).release_id
    runtime = setup.runtime()
    [replica] = runtime.status(release_id)
    assert replica.pid is not None

    os.kill(replica.pid, signal.SIGKILL)

    def restarted() -> bool:
        [now] = runtime.status(release_id)
        return now.state is ReplicaState.READY and now.restarts >= 1 and now.pid != replica.pid

    wait_until(restarted, "the killed replica to be ready again")
    view = envs.environment_status(setup.project, setup.store, "staging")
    assert view.releases[0].replicas[0].restarts >= 1
    events = setup.store.ledger.history.events("staging", (EventKind.REPLICA_EVENT,))
    exits = [
        e.data for e in events if e.data["event"] == "exit" and e.data["release"] == release_id
    ]
    assert [(d["replica"], d["pid"]) for d in exits] == [(0, replica.pid)]


@pytest.mark.real
def test_status_shows_weights_replicas_and_rates(setup: Setup) -> None:
    v1, v2 = setup.build("v1"), setup.build("v2")
    setup.deploy(v1)
    url = setup.deploy(v2).url
    envs.environment_status(setup.project, setup.store, "staging")  # a first sample

    answers(url, 20)
    view = envs.environment_status(setup.project, setup.store, "staging")

    assert view.url == url
    assert (view.live_release, view.warm_release) == (release_of(v2), release_of(v1))
    assert [(r.release_id, r.state, r.weight) for r in view.releases] == [
        (release_of(v2), ReleaseState.LIVE, 100),
        (release_of(v1), ReleaseState.WARM, 0),
    ]
    for release in view.releases:
        assert [r.state for r in release.replicas] == [ReplicaState.READY]
    live, warm = (release.rates for release in view.releases)
    assert live is not None and live.requests == 20 and live.requests_per_second > 0
    assert warm is not None and warm.requests == 0


def test_status_of_a_never_deployed_environment_is_not_found(setup: Setup) -> None:
    with pytest.raises(ConveyorError) as raised:
        envs.environment_status(setup.project, setup.store, "production")
    assert isinstance(raised.value, NotFoundError), (
        "PRODUCT BUG (service/environments.py environment_status: controller() -> "
        "make_router() creates the environment's row before the `record is None` check, "
        f"so the absent router is queried): {type(raised.value).__name__}: {raised.value}"
    )
    views = {v.name: v for v in envs.list_environments(setup.project, setup.store)}
    assert views["production"].url is None, "reading status must not allocate its ports"


def test_metrics_of_a_never_deployed_environment_are_empty(setup: Setup) -> None:
    try:
        text, failure = envs.metrics(setup.project, setup.store, "production").decode(), None
    except ConveyorError as error:
        text, failure = "", f"{type(error).__name__}: {error}"
    assert failure is None, (
        "PRODUCT BUG (service/environments.py metrics: controller() creates the "
        "environment's row, so the `environment(name) is None` branch never runs and the "
        f"absent router is queried): {failure}"
    )
    assert "release=" not in text


# --- refusals ---------------------------------------------------------------------------


def test_a_router_port_already_in_use_is_named(setup: Setup) -> None:
    image = setup.build("v1")
    spec = setup.project.spec_path
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = int(holder.getsockname()[1])
        spec.write_text(spec.read_text().replace("  staging:\n", f"  staging:\n    port: {port}\n"))

        with pytest.raises(ConveyorError, match=f"port {port} is already in use"):
            setup.deploy(image)
    assert setup.running() == set()


def test_a_deploy_while_another_holds_the_lock_is_refused(setup: Setup) -> None:
    image = setup.build("v1")
    lock_path = setup.project.state_dir / "environments" / "staging" / "deploy.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ConveyorError, match="staging is being changed"):
            setup.deploy(image)
    assert setup.store.ledger.deploys.of_environment("staging") == []
    assert setup.running() == set()


@pytest.mark.real
def test_stop_environment_leaves_an_environment_whose_name_it_starts_alone(
    setup: Setup,
) -> None:
    """`env stop staging` picked releases by the `staging-` prefix of their ids, which the
    ids of an environment named `staging-eu` start with too."""
    spec = setup.project.spec_path
    spec.write_text(
        spec.read_text().replace("  production:\n", "  staging-eu: {}\n  production:\n")
    )
    v1 = setup.build("v1")
    setup.deploy(v1)
    try:
        url = setup.deploy(v1, "staging-eu").url

        stopped = envs.stop_environment(setup.project, setup.store, "staging")

        assert stopped == [release_of(v1)]
        assert setup.running() == {release_of(v1, "staging-eu")}
        assert answers(url, 3) == ["v1"] * 3
    finally:
        envs.stop_environment(setup.project, setup.store, "staging-eu")


@pytest.mark.real
def test_stop_environment_stops_its_router_and_releases(setup: Setup) -> None:
    v1, v2 = setup.build("v1"), setup.build("v2")
    setup.deploy(v1)
    url = setup.deploy(v2).url

    stopped = envs.stop_environment(setup.project, setup.store, "staging")

    assert sorted(stopped) == sorted([release_of(v1), release_of(v2)])
    assert setup.running() == set()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2.0)
    assert len(envs.history(setup.project, setup.store, "staging")) == 2
