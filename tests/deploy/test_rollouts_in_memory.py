"""Every strategy and the controller's recovery paths, in memory: a fake clock, runtime
and router (deploy/fakes.py) behind the real controller, strategies, judge and ledger.
The same behaviours are shown with real processes in test_canary.py and
test_reliability.py; these run in milliseconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.deploy.model import RouteTable
from conveyor.deploy.progress import CanaryProgress, Phase, load_progress
from conveyor.deploy.strategies import STRATEGIES, StrategyKind, kind_of
from conveyor.spec.environments import Environment
from conveyor.spec.strategy import Strategy
from conveyor.states import DeployState, ReleaseState
from conveyor.store.records import EventKind
from conveyor.store.store import Store
from deploy.fakes import Stage, version

pytestmark = pytest.mark.timeout(10)

ANALYSIS = {
    "interval": "1s",
    "min_duration": "3s",
    "max_duration": "60s",
    "min_effect": 2.0,
    "negligible_rate": 0.02,
}
CANARY = {"canary": {"analysis": ANALYSIS, "steps": [{"weight": 30}, {"analysis": {}}]}}
PAUSED = {
    "canary": {
        "analysis": ANALYSIS,
        "steps": [{"weight": 20}, {"pause": "until-promoted"}, {"weight": 60}],
    }
}


class Crash(BaseException):
    """The controller's process dies here (not an error anything catches)."""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state") as opened:
        yield opened


def stage(
    store: Store, tmp_path: Path, strategy: dict[str, Any] | None = None, **env: Any
) -> Stage:
    spec = Environment.model_validate(
        {"replicas": 2, "drain": "2s", **env, **({"strategy": strategy} if strategy else {})}
    )
    return Stage(spec, store, tmp_path / "deploy.lock")


def weights(stage: Stage) -> list[dict[str, int]]:
    """The weights of every route table the router was given, by image version."""
    return [
        {backend.version: backend.weight for backend in table.backends}
        for table in stage.router.tables
    ]


def addresses(table: RouteTable, image: str) -> tuple[str, ...]:
    found = [b.addresses for b in table.backends if b.version == version(image)]
    return found[0] if found else ()


# -- direct ------------------------------------------------------------------------------


def test_a_first_deploy_goes_direct_and_takes_all_traffic(store: Store, tmp_path: Path) -> None:
    env = stage(store, tmp_path, CANARY)
    outcome = env.deploy("v1")
    assert outcome.state is DeployState.SUCCEEDED
    assert env.environment().live_release == env.release_id("v1")
    assert weights(env)[-1] == {version("v1"): 100}
    assert env.events(EventKind.RELEASE_DECISION) == []  # nothing to judge against


def test_direct_shifts_traffic_and_keeps_the_previous_release_warm(
    store: Store, tmp_path: Path
) -> None:
    env = stage(store, tmp_path)
    env.deploy("v1")
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.SUCCEEDED
    assert (env.environment().live_release, env.environment().warm_release) == (
        env.release_id("v2"),
        env.release_id("v1"),
    )
    assert weights(env)[-1] == {version("v2"): 100, version("v1"): 0}
    assert env.runtime.releases() == sorted([env.release_id("v1"), env.release_id("v2")])


def test_a_release_that_crashes_at_start_fails_and_the_previous_keeps_everything(
    store: Store, tmp_path: Path
) -> None:
    env = stage(store, tmp_path)
    env.deploy("v1")
    env.runtime.broken.add(version("v2"))
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.FAILED
    assert "crashed at start" in (outcome.reason or "")
    assert weights(env)[-1] == {version("v1"): 100}
    assert env.release_id("v2") not in env.runtime.releases()  # stopped after the drain
    assert env.environment().live_release == env.release_id("v1")


# -- canary ------------------------------------------------------------------------------


def test_a_good_canary_is_promoted_and_the_baseline_retired(store: Store, tmp_path: Path) -> None:
    env = stage(store, tmp_path, CANARY)
    env.deploy("v1")
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    assert outcome.report["verdict"] == "promote"
    baseline = f"{version('v1')}-baseline"
    assert {version("v2"): 30, baseline: 30, version("v1"): 40} in weights(env)
    assert weights(env)[-1] == {version("v2"): 100, version("v1"): 0}
    assert env.environment().warm_release == env.release_id("v1")
    baseline_id = env.release_id("v1") + "-baseline"
    assert baseline_id not in env.runtime.releases()
    record = store.ledger.releases.get(baseline_id, "staging")
    assert record is not None and record.state is ReleaseState.RETIRED


def test_a_faulty_canary_is_rolled_back_by_the_judge(store: Store, tmp_path: Path) -> None:
    env = stage(store, tmp_path, CANARY)
    env.deploy("v1")
    env.router.error_rates[version("v2")] = 0.3
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.ROLLED_BACK
    assert outcome.report["verdict"] == "rollback"
    assert outcome.report["canary_errors"] > 0
    assert weights(env)[-1] == {version("v1"): 100}  # all traffic back at once
    assert env.release_id("v2") not in env.runtime.releases()
    canary = store.ledger.releases.get(env.release_id("v2"), "staging")
    assert canary is not None and canary.state is ReleaseState.FAILED
    assert env.events(EventKind.RELEASE_DECISION)[-1]["verdict"] == "rollback"
    progress = load_progress(store.ledger.deploys.of_environment("staging")[-1].progress)
    assert progress is not None and progress.phase is Phase.ROLLED_BACK
    assert progress.canary_errors == outcome.report["canary_errors"]


def test_a_known_good_digest_goes_back_without_analysis(store: Store, tmp_path: Path) -> None:
    env = stage(store, tmp_path, CANARY)
    env.deploy("v1")
    env.deploy("v2")
    decisions = len(env.events(EventKind.RELEASE_DECISION))
    outcome = env.deploy("v1")
    assert outcome.state is DeployState.SUCCEEDED
    assert len(env.events(EventKind.RELEASE_DECISION)) == decisions
    assert any("fast path" in said for said in env.said)


def test_a_pause_holds_until_promoted(store: Store, tmp_path: Path) -> None:
    env = stage(store, tmp_path, PAUSED)
    env.deploy("v1")
    env.clock.after(30, lambda: env.command("promote"))
    started = env.clock.now
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.SUCCEEDED
    assert env.clock.now - started >= 30  # held at 20 % until the command
    shares = [w[version("v2")] for w in weights(env) if version("v2") in w]
    assert [share for i, share in enumerate(shares) if shares[i - 1 : i] != [share]] == [
        0,  # reachable by its version only, for the smoke tests
        20,
        60,
        100,
    ]


def test_an_abort_rolls_back_at_once(store: Store, tmp_path: Path) -> None:
    env = stage(store, tmp_path, PAUSED)
    env.deploy("v1")
    env.clock.after(5, lambda: env.command("abort", actor="bob"))
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.ROLLED_BACK
    assert outcome.reason == "aborted by bob"
    assert weights(env)[-1] == {version("v1"): 100}


def test_pause_then_resume_of_an_analysis_step(store: Store, tmp_path: Path) -> None:
    env = stage(store, tmp_path, CANARY)
    env.deploy("v1")
    env.clock.after(1, lambda: env.command("pause"))
    env.clock.after(40, lambda: env.command("resume"))
    started = env.clock.now
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.SUCCEEDED
    assert env.clock.now - started >= 40  # the judge's promotion waited for the resume
    commands = [said for said in env.said if said.startswith("alice: ")]
    assert commands == ["alice: pause", "alice: resume"]


def test_an_inconclusive_analysis_pauses_until_a_person_decides(
    store: Store, tmp_path: Path
) -> None:
    strict = {**ANALYSIS, "negligible_rate": 0.0001, "max_duration": "5s"}
    env = stage(store, tmp_path, {"canary": {"analysis": strict, "steps": [{"analysis": {}}]}})
    env.deploy("v1")
    env.clock.after(20, lambda: env.command("promote"))
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.SUCCEEDED
    assert any(said.startswith("inconclusive: paused") for said in env.said)


def test_a_rollback_during_a_canary_supersedes_it(store: Store, tmp_path: Path) -> None:
    env = stage(store, tmp_path, PAUSED)  # held at a pause until promoted
    env.deploy("v1")
    back = env.release_id("v1")
    env.clock.after(5, lambda: env.controller().rollback("carol", to=back, reason="on call"))
    started = env.clock.now
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.ROLLED_BACK
    assert "rolled back while deploying" in (outcome.reason or "")
    assert env.environment().live_release == env.release_id("v1")
    assert env.runtime.releases() == [env.release_id("v1")]  # canary and baseline stopped
    assert env.clock.now - started < 10  # at the next interval, not at a person's command


# -- blue-green, rolling, A/B -------------------------------------------------------------


def test_blue_green_previews_by_pin_then_switches_at_once(store: Store, tmp_path: Path) -> None:
    strategy = {"blue_green": {"preview_duration": "10s", "bake": "5s"}}
    env = stage(store, tmp_path, strategy)
    env.deploy("v1")
    env.router.tables.clear()
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.SUCCEEDED
    seen = [w for w in weights(env) if version("v2") in w]
    assert seen[0] == {version("v2"): 0, version("v1"): 100}  # the preview: pinned only
    assert seen[-1] == {version("v2"): 100, version("v1"): 0}
    assert all(w[version("v2")] in (0, 100) for w in seen)  # no step between
    assert not any(release.endswith("-baseline") for release in env.runtime.starts)


def test_rolling_moves_one_replica_at_a_time_within_the_limits(
    store: Store, tmp_path: Path
) -> None:
    strategy = {"rolling": {"max_surge": 1, "max_unavailable": 0, "min_ready": "1s"}}
    env = stage(store, tmp_path, strategy, replicas=3)
    env.deploy("v1")
    env.router.tables.clear()
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.SUCCEEDED
    serving = [
        tuple(len(addresses(table, image)) for image in ("v2", "v1"))
        for table in env.router.tables[:-1]  # the last: the deploy confirmed
    ]
    assert serving == [(1, 3), (1, 2), (2, 2), (2, 1), (3, 1), (3, 0)]
    assert all(3 <= new + old <= 4 for new, old in serving)


def test_an_ab_test_sends_matching_requests_to_the_new_version_until_promoted(
    store: Store, tmp_path: Path
) -> None:
    env = stage(store, tmp_path, {"ab": {"header": "X-Beta", "value": "yes"}})
    env.deploy("v1")
    env.clock.after(30, lambda: env.command("promote"))
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.SUCCEEDED
    [matched] = {table.matches for table in env.router.tables if table.matches}
    assert (matched[0].header, matched[0].value) == ("X-Beta", "yes")
    served = {s.release_id: s.requests for s in env.router.signals()}
    assert served[env.release_id("v2")] > 0  # matching requests reached it at weight 0
    assert weights(env)[-1] == {version("v2"): 100, version("v1"): 0}


def test_the_strategy_table_has_every_kind_of_the_spec() -> None:
    assert set(STRATEGIES.names) == {kind.value for kind in StrategyKind}
    assert all(callable(STRATEGIES.factory(kind)) for kind in StrategyKind)
    assert {kind.value for kind in StrategyKind} - {"direct"} == set(Strategy.model_fields)
    assert kind_of(None) is StrategyKind.DIRECT
    spec = Environment.model_validate({"strategy": {"blue_green": {}}})
    assert kind_of(spec.strategy) is StrategyKind.BLUE_GREEN


# -- recovery ----------------------------------------------------------------------------


def test_a_canary_whose_controller_died_is_resumed_at_its_step(
    store: Store, tmp_path: Path
) -> None:
    env = stage(store, tmp_path, PAUSED)
    env.deploy("v1")

    def crash() -> None:
        raise Crash

    env.clock.after(5, crash)  # held at the pause: the canary at 20 %
    with pytest.raises(Crash):
        env.deploy("v2", env.elsewhere())
    env.clock.after(5, lambda: env.command("promote"))
    outcome = env.controller().reconcile()
    assert outcome is not None and outcome.state is DeployState.SUCCEEDED
    assert env.environment().live_release == env.release_id("v2")
    assert env.runtime.starts.count(env.release_id("v2")) == 1  # never a second copy
    assert any(said.startswith("resuming interrupted deploy") for said in env.said)


def test_a_controller_that_died_after_sending_traffic_back_is_finished_as_rolled_back(
    store: Store, tmp_path: Path
) -> None:
    env = stage(store, tmp_path, CANARY)
    env.deploy("v1")
    env.router.error_rates[version("v2")] = 0.3

    def crash_on_the_way_back(routes: Any) -> None:
        if [b.version for b in routes.backends] == [version("v1")]:  # all back on v1
            raise Crash
        set_routes(routes)

    set_routes = env.router.set_routes
    env.router.set_routes = crash_on_the_way_back  # type: ignore[method-assign]
    with pytest.raises(Crash):
        env.deploy("v2", env.elsewhere())
    env.router.set_routes = set_routes  # type: ignore[method-assign]
    outcome = env.controller().reconcile()
    assert outcome is not None and outcome.state is DeployState.ROLLED_BACK
    assert env.router.routes().backends[0].version == version("v1")  # the recorded routes
    assert env.release_id("v2") not in env.runtime.releases()


# -- progress ----------------------------------------------------------------------------


def test_progress_recorded_by_an_older_conveyor_still_loads() -> None:
    older = {"strategy": "canary", "step": 1, "weight": 30, "retired_key": True}
    progress = load_progress(older)
    assert progress == CanaryProgress(step=1, weight=30)
    assert load_progress({}) is None
    assert load_progress(None) is None
