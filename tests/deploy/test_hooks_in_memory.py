"""Release hooks with every strategy, in memory (deploy/fakes.py): when they run, what
their failure does to traffic, and what is recorded. Real processes: test_hooks.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.spec.environments import Environment
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
MIGRATE = {"name": "migrate", "command": "migrate --all"}
NOTIFY = {"command": ["notify"]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state") as opened:
        yield opened


def stage(
    store: Store, tmp_path: Path, hooks: dict[str, Any], strategy: dict[str, Any] | None = None
) -> Stage:
    spec = Environment.model_validate(
        {"replicas": 3, "drain": "1s", "hooks": hooks}
        | ({"strategy": strategy} if strategy else {})
    )
    return Stage(spec, store, tmp_path / "deploy.lock")


def routed(env: Stage) -> dict[str, int]:
    return {b.version: b.weight for b in env.router.routes().backends if b.weight}


def hook_results(env: Stage) -> list[tuple[str, str, str]]:
    return [
        (str(e["phase"]), str(e["hook"]), str(e["result"]))
        for e in env.events(EventKind.RELEASE_HOOK)
    ]


@pytest.mark.parametrize("strategy", [None, CANARY])
def test_hooks_run_once_per_deploy_before_any_traffic_and_after_all_of_it(
    store: Store, tmp_path: Path, strategy: dict[str, Any] | None
) -> None:
    env = stage(store, tmp_path, {"before_traffic": [MIGRATE], "after_traffic": [NOTIFY]}, strategy)
    env.deploy("v1")
    env.runtime.tasks.clear()
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    v1, v2 = env.release_id("v1"), env.release_id("v2")
    # Before: only v1 had traffic, and v2 had not started; after: v2 had all of it.
    assert env.runtime.tasks == [
        (v2, ["migrate", "--all"], [v1]),
        (v2, ["notify"], [v2]),
    ]
    assert env.runtime.starts.index(v2) >= 0
    assert "[migrate] ran migrate with CONVEYOR_HOOK=before_traffic" in env.said
    events = [e for e in env.events(EventKind.RELEASE_HOOK) if e["release"] == v2]
    assert [(e["hook"], e["result"]) for e in events] == [
        ("migrate", "running"),
        ("migrate", "succeeded"),
        ("notify", "running"),
        ("notify", "succeeded"),
    ]
    assert events[1]["exit_code"] == 0 and events[1]["deploy_id"] == outcome.deploy_id
    assert events[1]["seconds"] >= 0 and events[1]["started_at"] > 0


def test_a_failed_before_traffic_hook_fails_the_deploy_with_nothing_routed(
    store: Store, tmp_path: Path
) -> None:
    env = stage(store, tmp_path, {"before_traffic": [MIGRATE, NOTIFY]})
    env.deploy("v1")
    tables = len(env.router.tables)
    env.runtime.task_results["migrate"] = 3
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.FAILED
    assert outcome.reason == "before_traffic hook 'migrate' exited with code 3: migrate said bye"
    assert env.router.tables[tables:] == []  # the routes were never touched
    assert routed(env) == {version("v1"): 100}
    v2 = env.release_id("v2")
    assert v2 not in env.runtime.starts  # never started
    assert [argv for _, argv, _ in env.runtime.tasks][-1] == ["migrate", "--all"]  # no notify
    record = store.ledger.releases.get(v2, "staging")
    assert record is not None and record.state is ReleaseState.FAILED
    assert env.environment().live_release == env.release_id("v1")
    assert hook_results(env)[-1] == ("before_traffic", "migrate", "failed")


def test_a_hook_past_its_timeout_is_named_with_it(store: Store, tmp_path: Path) -> None:
    env = stage(store, tmp_path, {"before_traffic": [{**MIGRATE, "timeout": "2s"}]})
    env.runtime.task_results["migrate"] = None
    outcome = env.deploy("v1")
    assert outcome.state is DeployState.FAILED
    assert "'migrate' was killed at its timeout of 2 s" in (outcome.reason or "")
    assert hook_results(env)[-1] == ("before_traffic", "migrate", "timed_out")
    assert env.router.routes().backends == ()


@pytest.mark.parametrize("strategy", [None, CANARY])
def test_a_failed_after_traffic_hook_rolls_back(
    store: Store, tmp_path: Path, strategy: dict[str, Any] | None
) -> None:
    env = stage(store, tmp_path, {"after_traffic": [NOTIFY]}, strategy)
    env.deploy("v1")
    env.runtime.task_results["notify"] = 1
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.ROLLED_BACK
    assert "after_traffic hook 'notify' exited with code 1" in (outcome.reason or "")
    assert routed(env) == {version("v1"): 100}
    assert env.environment().live_release == env.release_id("v1")
    rollbacks = env.events(EventKind.ROLLBACK)
    assert rollbacks and rollbacks[-1]["reason"] == outcome.reason


def test_on_failure_continue_records_the_failure_and_goes_on(store: Store, tmp_path: Path) -> None:
    hooks = {
        "before_traffic": [{**MIGRATE, "on_failure": "continue"}],
        "after_traffic": [{**NOTIFY, "on_failure": "continue"}],
    }
    env = stage(store, tmp_path, hooks)
    env.runtime.task_results.update({"migrate": 1, "notify": 1})
    outcome = env.deploy("v1")
    assert outcome.state is DeployState.SUCCEEDED
    assert [result for *_, result in hook_results(env) if result != "running"] == [
        "failed",
        "failed",
    ]
    assert any("(on_failure: continue)" in line for line in env.said)


def test_a_resumed_deploy_does_not_run_a_hook_it_already_ran(store: Store, tmp_path: Path) -> None:
    env = stage(store, tmp_path, {"before_traffic": [MIGRATE]})

    class Crash(BaseException):
        pass

    def die(*_: Any) -> None:
        raise Crash

    elsewhere = env.elsewhere()
    env.runtime.start = die  # type: ignore[method-assign]  # the controller dies here
    with pytest.raises(Crash):
        env.deploy("v1", elsewhere)
    del env.runtime.start  # back to the class's
    outcome = env.deploy("v1")
    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    assert [argv for _, argv, _ in env.runtime.tasks] == [["migrate", "--all"]]
    assert any("already ran in this deploy" in line for line in env.said)


def test_the_same_digest_deploys_once_its_hook_is_fixed(store: Store, tmp_path: Path) -> None:
    env = stage(store, tmp_path, {"before_traffic": [MIGRATE]})
    env.deploy("v1")
    env.runtime.task_results["migrate"] = 2
    assert env.deploy("v2").state is DeployState.FAILED
    del env.runtime.task_results["migrate"]  # say, the database is reachable again
    outcome = env.deploy("v2")
    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    assert routed(env) == {version("v2"): 100}
    assert [argv for _, argv, _ in env.runtime.tasks] == [["migrate", "--all"]] * 3
