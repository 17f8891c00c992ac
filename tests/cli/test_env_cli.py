"""`conveyor deploy`, `conveyor rollback` and `conveyor env ...` in-process, against real
replicas and a real builtin router; every environment started here is stopped at teardown."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import CliResult, run_cli
from conveyor.deploy.rollout import release_name
from conveyor.service import environments as envs
from conveyor.service.project import Project
from deploy.apps import build_app, make_project

ENVIRONMENTS = ("staging", "production")


@dataclass(frozen=True)
class Setup:
    project: Project
    root: Path

    def build(self, version: str, behaviour: str = "ok") -> str:
        return build_app(self.project, self.root, version, behaviour)

    def cli(self, *args: str) -> CliResult:
        return run_cli(list(args), self.project.directory)


def release_of(image: str) -> str:
    repository, digest = image.split("@")
    return release_name("staging", repository, digest)


def served_url(result: CliResult) -> str:
    found = re.search(r"serving at (http://127\.0\.0\.1:\d+)", result.stdout)
    assert found, result.stdout
    return found.group(1)


def body_at(url: str) -> str:
    return httpx.get(url + "/", timeout=5.0).text


@contextlib.contextmanager
def started(root: Path) -> Iterator[Setup]:
    """A project with staging and production; whatever they run is stopped on leaving."""
    project = make_project(root / "project", replicas=1, ready_timeout="10s")
    try:
        yield Setup(project, root)
    finally:
        with project.open_store() as store:
            for name in ENVIRONMENTS:
                envs.stop_environment(project, store, name)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with started(tmp_path) as fresh:
        yield fresh


@dataclass(frozen=True)
class Live:
    setup: Setup
    image: str
    url: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One staging deploy shared by the tests that only read the environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("CONVEYOR_")]:
            patch.delenv(name)  # as the autouse fixture does, which runs per test
        with started(tmp_path_factory.mktemp("live")) as ready:
            image = ready.build("v1")
            deployed = ready.cli("deploy", "staging", image)
            assert deployed.exit_code == 0, deployed.stderr
            yield Live(ready, image, served_url(deployed))


# --- reading a live environment ---------------------------------------------------------


@pytest.mark.real
def test_deploy_prints_the_url_it_serves_at(live: Live) -> None:
    assert body_at(live.url) == "v1"


@pytest.mark.real
def test_env_ls_lists_every_environment_with_its_url(live: Live) -> None:
    result = live.setup.cli("env", "ls", "-o", "json")

    assert result.exit_code == 0, result.stderr
    views = {view["name"]: view for view in result.json()}
    assert set(views) == set(ENVIRONMENTS)
    assert views["staging"]["url"] == live.url
    assert views["staging"]["live_release"] == release_of(live.image)
    assert views["production"]["live_release"] is None


@pytest.mark.real
def test_env_status_shows_the_live_release_with_all_traffic(live: Live) -> None:
    result = live.setup.cli("env", "status", "staging", "-o", "json")

    assert result.exit_code == 0, result.stderr
    view = result.json()
    assert view["live_release"] == release_of(live.image)
    [release] = view["releases"]
    assert (release["release_id"], release["state"], release["weight"]) == (
        release_of(live.image),
        "live",
        100,
    )
    assert [replica["state"] for replica in release["replicas"]] == ["ready"]


@pytest.mark.real
def test_env_history_lists_the_deploy(live: Live) -> None:
    result = live.setup.cli("env", "history", "staging", "-o", "json")

    assert result.exit_code == 0, result.stderr
    [entry] = result.json()
    assert (entry["kind"], entry["release_id"], entry["result"]) == (
        "deploy",
        release_of(live.image),
        "succeeded",
    )
    assert entry["digest"] == live.image.split("@")[1]


@pytest.mark.real
def test_env_metrics_pass_promtool(live: Live) -> None:
    result = live.setup.cli("env", "metrics", "staging")

    assert result.exit_code == 0, result.stderr
    assert f'release="{release_of(live.image)}"' in result.stdout
    checked = subprocess.run(
        ["promtool", "check", "metrics"],
        input=result.stdout,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.real
def test_env_watch_records_a_time_series_of_the_golden_signals(live: Live) -> None:
    with live.setup.project.open_store() as store:
        before = len(store.ledger.samples.of("staging"))
    for _ in range(20):
        body_at(live.url)
    result = live.setup.cli("env", "watch", "staging", "--interval", "0.3", "--count", "2")

    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, result.stdout  # the current release first; later lines only for changes
    assert f"{release_of(live.image)}  live 100%" in lines[0] and "req/s" in lines[0]
    with live.setup.project.open_store() as store:
        samples = store.ledger.samples.of("staging", release_of(live.image))
    assert len(samples) >= before + 3  # the first sample and one per window


# --- changing an environment ------------------------------------------------------------


@pytest.mark.real
def test_a_deploy_failing_its_smoke_test_exits_1(setup: Setup) -> None:
    v1, bad = setup.build("v1"), setup.build("v2", "bad-smoke")
    assert setup.cli("deploy", "staging", v1).exit_code == 0

    result = setup.cli("deploy", "staging", bad)

    assert result.exit_code == 1, result.stdout + result.stderr
    assert "rolled_back" in result.stdout
    assert "GET /smoke: expected 200, got 500" in result.stdout
    assert body_at(served_url(result)) == "v1"


@pytest.mark.real
def test_rollback_sends_traffic_back_to_the_previous_release(setup: Setup) -> None:
    v1, v2 = setup.build("v1"), setup.build("v2")
    assert setup.cli("deploy", "staging", v1).exit_code == 0
    url = served_url(setup.cli("deploy", "staging", v2))

    result = setup.cli("rollback", "staging")

    assert result.exit_code == 0, result.stderr
    assert f"all traffic on {release_of(v1)}" in result.stdout
    assert body_at(url) == "v1"


@pytest.mark.real
def test_rollback_to_a_staging_release_in_production_exits_2_and_changes_nothing(
    setup: Setup,
) -> None:
    """The attack: `rollback production --to staging-app-<digest>` named a staging release
    that failed its smoke test and made it production's live release, past approval,
    promotion order and smoke tests."""
    v1, bad = setup.build("v1"), setup.build("v2", "bad-smoke")
    assert setup.cli("deploy", "staging", v1).exit_code == 0
    url = served_url(setup.cli("deploy", "production", v1))
    assert setup.cli("deploy", "staging", bad).exit_code == 1
    with setup.project.open_store() as store:
        before = (
            store.ledger.environments.get("production"),
            store.ledger.history.events("production"),
        )
        routes = envs.controller(setup.project, store, "production").target.router.routes()

    result = setup.cli("rollback", "production", "--to", release_of(bad))

    assert result.exit_code == 2, result.stdout + result.stderr
    assert f"{release_of(bad)} was never live in production" in result.stderr
    assert "conveyor deploy production" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    with setup.project.open_store() as store:
        after = (
            store.ledger.environments.get("production"),
            store.ledger.history.events("production"),
        )
        router = envs.controller(setup.project, store, "production").target.router
        assert (after, router.routes()) == (before, routes)
    assert {body_at(url) for _ in range(10)} == {"v1"}


def test_deploy_to_an_unknown_environment_exits_4_without_a_traceback(setup: Setup) -> None:
    result = setup.cli("deploy", "nosuchenv", setup.build("v1"))

    assert result.exit_code == 4
    assert "no environment 'nosuchenv'" in result.stderr
    assert "staging, production" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.real
def test_env_stop_stops_the_router_and_releases(setup: Setup) -> None:
    url = served_url(setup.cli("deploy", "staging", setup.build("v1")))

    result = setup.cli("env", "stop", "staging")

    assert result.exit_code == 0, result.stderr
    assert "stopped 1 release(s) and the router" in result.stdout
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2.0)
