"""`conveyor env watch` shows the current releases, then only changes (like `kubectl get
-w`): not every release the router once counted, not the same lines every second."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from conveyor.deploy.model import SignalRates
from conveyor.deploy.rollout import release_name
from conveyor.service.watch import WatchChange, WatchLine, WatchRow, changes, rates_moved
from conveyor.states import ReleaseState
from deploy.apps import ONE_REPLICA_STAGING, build_app, project_with_spec
from deploy.fake_plane import use_fake_plane

SPEC = ONE_REPLICA_STAGING


def rates(rps: float = 20.0, errors: float = 0.0, p99: float | None = 0.05) -> SignalRates:
    return SignalRates("r", 0.0, 1.0, int(rps), rps, 0.0, errors, 0.01, 0.02, p99, 1.0, 1, 8)


def row(release_id: str = "live", **changed: Any) -> WatchRow:
    return replace(WatchRow(release_id, ReleaseState.LIVE, 100, 2, 2, 0, rates()), **changed)


def kinds(lines: list[WatchLine]) -> list[tuple[WatchChange, str]]:
    return [(line.change, line.row.release_id) for line in lines]


def test_the_first_window_is_the_current_state_then_only_changes_are_shown() -> None:
    first = [row(), row("warm", state=ReleaseState.WARM, weight=0, rates=rates(0.0))]
    shown = {r.release_id: r for r in first}

    assert kinds(changes(None, first)) == [
        (WatchChange.CURRENT, "live"),
        (WatchChange.CURRENT, "warm"),
    ]
    assert changes(shown, first) == []
    noisy = [row(rates=rates(21.5, p99=0.06)), first[1]]
    assert changes(shown, noisy) == []  # one window's noise
    canary = row("canary", state=ReleaseState.SERVING, weight=20)
    moved = [row(weight=80), canary]
    assert kinds(changes(shown, moved)) == [
        (WatchChange.CHANGED, "live"),
        (WatchChange.ADDED, "canary"),
        (WatchChange.GONE, "warm"),
    ]


@pytest.mark.parametrize(
    ("old", "new", "moved"),
    [
        (rates(20.0), rates(21.0), False),
        (rates(20.0), rates(30.0), True),  # +50 %
        (rates(0.2), rates(0.6), False),  # tripled, but under one request a second
        (rates(20.0), rates(20.0, errors=0.05), True),  # 5xx from none to 5 %
        (rates(20.0, p99=0.05), rates(20.0, p99=0.2), True),
        (rates(20.0, p99=0.05), rates(0.0, p99=None), True),  # traffic stopped
        (None, rates(), True),
    ],
)
def test_golden_signals_change_beyond_a_windows_noise(
    old: SignalRates | None, new: SignalRates, moved: bool
) -> None:
    assert rates_moved(old, new) is moved


def test_env_watch_prints_the_current_releases_once_and_not_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = project_with_spec(tmp_path / "project", SPEC)
    plane = use_fake_plane(monkeypatch)
    images = [build_app(project, tmp_path, version) for version in ("v0", "v1", "v2")]
    for image in images:  # v0 served traffic once, then retired: the router still counts it
        assert run_cli(["deploy", "staging", image], project.directory).exit_code == 0
    old, warm, live = (release_name("staging", *image.split("@")) for image in images)
    assert old in {signal.release_id for signal in plane.router.signals()}

    text = run_cli(["env", "watch", "staging", "-i", "0.2", "-n", "3"], project.directory)
    lines = run_cli(
        ["env", "watch", "staging", "-i", "0.2", "-n", "3", "-o", "json"], project.directory
    )

    assert text.exit_code == 0, text.stderr
    printed = text.stdout.splitlines()
    assert len(printed) == 2, text.stdout  # three windows, the state printed once
    assert f"{live}  live 100%  1/1 ready" in printed[0]
    assert f"{warm}  warm 0%  1/1 ready" in printed[1]
    assert old not in text.stdout
    objects = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [(o["change"], o["release"], o["state"], o["weight"]) for o in objects] == [
        ("current", live, "live", 100),
        ("current", warm, "warm", 0),
    ]
    assert objects[0]["replicas"] == {"ready": 1, "total": 1, "restarts": 0}
