"""DORA over what the real release controller writes (deploy/fakes.py: a fake clock,
runtime and router behind the real controller, strategies, judge and ledger): the
events DORA reads are the ones deploys, canaries and rollbacks record, not a guess."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.observe.dora import dora
from conveyor.spec.environments import Environment
from conveyor.states import DeployState
from conveyor.store.store import Store
from deploy.fakes import Stage, version

pytestmark = pytest.mark.timeout(20)

ANALYSIS = {
    "interval": "1s",
    "min_duration": "3s",
    "max_duration": "60s",
    "min_effect": 2.0,
    "negligible_rate": 0.02,
}
CANARY = {"canary": {"analysis": ANALYSIS, "steps": [{"weight": 30}, {"analysis": {}}]}}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state") as opened:
        yield opened


def test_deploys_a_canary_stop_and_a_rollback_as_the_controller_records_them(
    store: Store, tmp_path: Path
) -> None:
    started = time.time() - 1
    spec = Environment.model_validate({"replicas": 2, "drain": "2s", "strategy": CANARY})
    env = Stage(spec, store, tmp_path / "deploy.lock")
    assert env.deploy("v1").state is DeployState.SUCCEEDED  # first: direct, all traffic
    assert env.deploy("v2").state is DeployState.SUCCEEDED  # canary, promoted to 100 %
    env.router.error_rates[version("v3")] = 0.3
    assert env.deploy("v3").state is DeployState.ROLLED_BACK  # the judge stops it at 30 %
    env.controller().rollback("carol", reason="on call")  # v2 -> v1: v2 failed
    report = dora(store, "staging", since=started, until=time.time() + 1)

    # v1 and v2 reached full traffic; v3 never did (stopped by the canary's judge).
    assert [f.release for f in report.deployment_facts] == [
        env.release_id("v1"),
        env.release_id("v2"),
    ]
    assert [f.failed_by for f in report.deployment_facts] == [None, "rollback"]
    assert report.change_failure_rate == 0.5
    assert report.deployment_facts[1].restored_by == "rollback"
    assert [s.release for s in report.stopped_by_canary] == [env.release_id("v3")]
    detected = report.stopped_by_canary[0].time_to_detect
    assert detected is not None and detected >= 0
    assert report.lead_time.count == 0 and report.without_commit_time == 2  # no runs
    assert dora(store, "production", since=started, until=time.time() + 1).deployments == 0
