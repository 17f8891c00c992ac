"""A stopped environment says so: `env ls` and `env status` show its releases as stopped
(not live), with a command to start it again; `env reconcile` brings them back.

On the in-memory data plane (deploy/fake_plane.py) behind the real service and CLI.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import CliResult, run_cli
from conveyor.deploy.rollout import release_name
from conveyor.deploy.routers.builtin import BuiltinRouter
from conveyor.errors import InfrastructureError
from conveyor.service.project import Project
from deploy.apps import ONE_REPLICA_STAGING, build_app, free_port, project_with_spec
from deploy.fake_plane import FakePlane, use_fake_plane

SPEC = ONE_REPLICA_STAGING


@dataclass(frozen=True)
class Staging:
    project: Project
    plane: FakePlane
    live: str  # release ids
    warm: str

    def cli(self, *args: str) -> CliResult:
        return run_cli(list(args), self.project.directory)


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Staging]:
    project = project_with_spec(tmp_path / "project", SPEC)
    plane = use_fake_plane(monkeypatch)
    images = [build_app(project, tmp_path, version) for version in ("v1", "v2")]
    for image in images:
        deployed = run_cli(["deploy", "staging", image], project.directory)
        assert deployed.exit_code == 0, deployed.stderr
    warm, live = (release_name("staging", *image.split("@")) for image in images)
    yield Staging(project, plane, live, warm)


def test_env_ls_and_status_show_a_stopped_environment_as_stopped(staging: Staging) -> None:
    assert staging.cli("env", "stop", "staging").exit_code == 0

    listed = staging.cli("env", "ls", "-o", "json")
    table = staging.cli("env", "ls")
    status = staging.cli("env", "status", "staging", "-o", "json")
    text = staging.cli("env", "status", "staging")

    assert staging.plane.runtime.releases() == []
    [view] = listed.json()
    assert (view["live_release"], view["stopped"]) == (staging.live, True)
    [row] = [line for line in table.stdout.splitlines() if line.startswith("staging")]
    assert f"{staging.live} (stopped)" in row and f"{staging.warm} (stopped)" in row
    assert status.exit_code == 0, status.stderr
    shown = [(r["release_id"], r["state"], r["weight"]) for r in status.json()["releases"]]
    assert shown == [(staging.live, "stopped", 0), (staging.warm, "stopped", 0)]
    assert text.exit_code == 0, text.stderr
    assert "`conveyor env reconcile staging` starts its router and releases again" in text.stdout
    assert "ensure_running" not in text.stdout + text.stderr


def test_reconcile_starts_a_stopped_environment_in_the_roles_it_had(staging: Staging) -> None:
    assert staging.cli("env", "stop", "staging").exit_code == 0

    reconciled = staging.cli("env", "reconcile", "staging")
    listed = staging.cli("env", "ls", "-o", "json")
    status = staging.cli("env", "status", "staging", "-o", "json")

    assert reconciled.exit_code == 0, reconciled.stderr
    assert listed.json()[0]["stopped"] is False
    assert sorted(staging.plane.runtime.releases()) == sorted([staging.live, staging.warm])
    states = {r["release_id"]: (r["state"], r["weight"]) for r in status.json()["releases"]}
    assert states == {staging.live: ("live", 100), staging.warm: ("warm", 0)}


def test_a_router_that_died_is_reported_with_a_command_to_start_it(
    staging: Staging, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not stopped by `env stop` (a reboot, a kill): the router's error, then the command."""

    def dead() -> None:
        raise InfrastructureError("the builtin router's admin port 1 did not answer")

    monkeypatch.setattr(staging.plane.router, "routes", dead)
    monkeypatch.setattr(staging.plane.router, "signals", dead)

    result = staging.cli("env", "status", "staging")

    assert result.exit_code != 0
    assert "staging's router does not answer" in result.stderr
    assert "conveyor env reconcile staging" in result.stderr
    assert "ensure_running" not in result.stderr and "Traceback" not in result.stderr


def test_the_builtin_routers_own_hint_is_a_command(tmp_path: Path) -> None:
    router = BuiltinRouter(tmp_path / "router", free_port(), free_port())  # never started

    with pytest.raises(InfrastructureError) as raised:
        router.routes()

    assert raised.value.hint is not None
    assert "conveyor env reconcile" in raised.value.hint
    assert "ensure_running" not in raised.value.hint
