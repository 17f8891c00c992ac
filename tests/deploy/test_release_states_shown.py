"""What `env status` and `release status` show while a progressive release runs: a canary
and its baseline with traffic are `serving` (not `starting`), and a promote ends a pause.

In memory (deploy/fakes.py): the real controller, canary and ledger on a fake data plane.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.deploy.progress import CanaryProgress, Phase, load_progress
from conveyor.spec.environments import Environment
from conveyor.states import DeployState, ReleaseState
from conveyor.store.store import Store
from deploy.fakes import Stage

pytestmark = pytest.mark.timeout(10)

ANALYSIS = {
    "interval": "1s",
    "min_duration": "3s",
    "max_duration": "60s",
    "min_effect": 2.0,
    "negligible_rate": 0.02,
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state") as opened:
        yield opened


def stage(store: Store, tmp_path: Path, canary: dict[str, Any]) -> Stage:
    spec = Environment.model_validate(
        {"replicas": 2, "drain": "1s", "strategy": {"canary": canary}}
    )
    return Stage(spec, store, tmp_path / "deploy.lock")


def states(env: Stage, *release_ids: str) -> list[ReleaseState]:
    found = [env.store.ledger.releases.get(release_id, "staging") for release_id in release_ids]
    return [release.state for release in found if release is not None]


def progress(env: Stage) -> CanaryProgress:
    [deploy] = env.store.ledger.deploys.of_environment("staging", DeployState.IN_PROGRESS)
    loaded = load_progress(deploy.progress)
    assert loaded is not None
    return loaded


def test_a_canary_and_its_baseline_with_traffic_are_serving(store: Store, tmp_path: Path) -> None:
    steps = [{"weight": 50}, {"pause": "until-promoted"}]
    env = stage(store, tmp_path, {"analysis": ANALYSIS, "steps": steps})
    env.deploy("v1")
    stable, canary = env.release_id("v1"), env.release_id("v2")
    baseline = f"{stable}-baseline"
    seen: list[list[ReleaseState]] = []
    env.clock.after(5, lambda: seen.append(states(env, canary, baseline, stable)))
    env.clock.after(6, lambda: env.command("promote"))

    outcome = env.deploy("v2")

    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    assert env.router.weights() == {canary: 100, stable: 0}
    assert seen == [[ReleaseState.SERVING, ReleaseState.SERVING, ReleaseState.LIVE]]
    assert states(env, canary, baseline, stable) == [
        ReleaseState.LIVE,
        ReleaseState.RETIRED,
        ReleaseState.WARM,
    ]


def test_a_promote_ends_an_inconclusive_pause_in_the_recorded_progress(
    store: Store, tmp_path: Path
) -> None:
    """The judge cannot decide (no error rate is negligible enough) and pauses; a person's
    promote moves the release on, and its progress says so."""
    strict = {**ANALYSIS, "negligible_rate": 0.0001, "max_duration": "5s", "inconclusive": "pause"}
    steps = [{"weight": 20}, {"analysis": {}}, {"pause": "until-promoted"}]
    env = stage(store, tmp_path, {"analysis": strict, "steps": steps})
    env.deploy("v1")
    seen: list[tuple[int | None, bool]] = []
    look = lambda: seen.append((progress(env).step, progress(env).paused))  # noqa: E731
    env.clock.after(15, look)  # held by the inconclusive analysis
    env.clock.after(20, lambda: env.command("promote"))
    env.clock.after(30, look)  # at the next step, a pause until promoted
    env.clock.after(40, lambda: env.command("promote"))

    outcome = env.deploy("v2")

    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    assert seen == [(1, True), (2, False)]
    [deploy] = store.ledger.deploys.of_environment("staging")[-1:]
    final = load_progress(deploy.progress)
    assert final is not None
    assert (final.phase, final.paused, final.weight) == (Phase.PROMOTED, False, 100)
