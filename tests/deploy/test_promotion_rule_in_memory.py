"""The promotion rule on a small team's traffic, in memory (deploy/fakes.py): at 20 req/s
a harmless canary is promoted within minutes with no `inconclusive:` setting, and says
what its promotion guarantees; a 2x error regression is rolled back, never promoted;
`inconclusive: promote` ends a step without a guarantee, and says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.deploy.progress import load_progress
from conveyor.spec.environments import Environment
from conveyor.states import DeployState
from conveyor.store.store import Store
from deploy.fakes import Stage, version

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state") as opened:
        yield opened


def small_team(store: Store, tmp_path: Path, analysis: dict[str, Any], errors: float) -> Stage:
    """20 req/s, 10 % to the canary and 10 % to its baseline, as the default steps begin."""
    strategy = {"canary": {"analysis": analysis, "steps": [{"weight": 10}, {"analysis": {}}]}}
    spec = Environment.model_validate({"replicas": 1, "drain": "1s", "strategy": strategy})
    env = Stage(spec, store, tmp_path / "deploy.lock")
    env.router.rps = 20
    env.router.error_rates[version("v1")] = errors
    env.router.error_rates[version("v2")] = errors
    return env


def progress_of(store: Store) -> Any:
    return load_progress(store.ledger.deploys.of_environment("staging")[-1].progress)


def test_a_harmless_canary_at_20_rps_is_promoted_in_minutes_with_its_guarantee(
    store: Store, tmp_path: Path
) -> None:
    env = small_team(store, tmp_path, {}, errors=0.0005)  # the defaults: pause if inconclusive
    env.deploy("v1")
    started = env.clock.now
    outcome = env.deploy("v2")

    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    assert outcome.report["verdict"] == "promote"
    assert env.clock.now - started <= 300
    assert not any(said.startswith("inconclusive") for said in env.said)
    [promoted] = [said for said in env.said if said.startswith("promoted: ")]
    assert "errors on >=1% of the canary's requests" in promoted
    assert "would have been caught with 95% probability, at 20 req/s over " in promoted
    assert progress_of(store).guarantee == promoted.removeprefix("promoted: ")


def test_a_2x_error_regression_at_20_rps_is_rolled_back_not_promoted(
    store: Store, tmp_path: Path
) -> None:
    env = small_team(store, tmp_path, {"max_duration": "30m"}, errors=0.02)
    env.router.error_rates[version("v2")] = 0.04  # under the 5 % guardrail
    env.deploy("v1")
    outcome = env.deploy("v2")

    assert outcome.state is DeployState.ROLLED_BACK, outcome.reason
    assert outcome.reason.startswith("errors: canary at")
    assert not any(said.startswith("promoted: ") for said in env.said)
    assert progress_of(store).guarantee is None


def test_inconclusive_promote_goes_on_without_a_guarantee_and_says_so(
    store: Store, tmp_path: Path
) -> None:
    # 1 % errors at 20 req/s: neither bound is reached in 30 s.
    analysis = {"max_duration": "30s", "inconclusive": "promote"}
    env = small_team(store, tmp_path, analysis, errors=0.01)
    env.deploy("v1")
    outcome = env.deploy("v2")

    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    assert "inconclusive: promoted without the judge's guarantee" in env.said
    assert not any(said.startswith("promoted: ") for said in env.said)
    assert progress_of(store).guarantee is None
