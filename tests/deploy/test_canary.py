"""Canary releases with real traffic through the builtin router: the judge rolls a bad
version back, promotes a good one, and people can pause, promote and abort."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import CliProcess, run_cli, wait_until
from conveyor.deploy.rollout import DeployOutcome, release_name
from conveyor.deploy.runtimes.process import ProcessRuntime
from conveyor.service import environments
from conveyor.service.images import image_store
from conveyor.service.project import Project
from conveyor.service.releases import release_status, send_command
from conveyor.states import DeployState, ReleaseState
from conveyor.store.records import EventKind
from deploy.apps import build_app, make_project
from deploy.load import Load

pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]

# Short intervals and durations so a test decides in seconds; the judge is the same.
CANARY = """\
      canary:
        analysis:
          interval: 0.5s
          min_duration: 3s
          max_duration: 40s
          min_effect: 2.0
          negligible_rate: 0.02   # a quiet canary passes after ~150 requests, not ~3,000
        steps:
          - weight: 30
          - analysis: {}
"""
PAUSED = """\
      canary:
        analysis: {interval: 0.3s, min_duration: 1s, max_duration: 20s}
        steps:
          - weight: 20
          - pause: until-promoted
"""


Staging = Callable[..., Project]


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[Staging]:
    """`staging(STRATEGY, replicas=1)`: a project whose staging has that strategy; whatever
    it runs is stopped at teardown."""
    made: list[Project] = []

    def open_one(strategy: str, replicas: int = 1) -> Project:
        folder = tmp_path / f"p{len(made)}"
        made.append(make_project(folder, replicas=replicas, strategy=strategy, drain="0.2s"))
        return made[-1]

    yield open_one
    for project in made:
        with project.open_store() as store:
            environments.stop_environment(project, store, "staging")


@pytest.fixture
def project(staging: Staging) -> Project:
    return staging(CANARY)


def deploy(project: Project, image: str) -> DeployOutcome:
    with project.open_store() as store:
        return environments.deploy(project, store, "staging", image, actor="tester")


def url_of(project: Project) -> str:
    with project.open_store() as store:
        record = store.ledger.environments.get("staging")
    assert record is not None
    return f"http://127.0.0.1:{record.port}"


def test_a_faulty_canary_is_rolled_back_by_the_judge(project: Project, tmp_path: Path) -> None:
    stable = build_app(project, tmp_path, "v1")
    faulty = build_app(project, tmp_path, "v2", "faulty")
    assert deploy(project, stable).state is DeployState.SUCCEEDED

    with Load(url_of(project)) as load:
        outcome = deploy(project, faulty)
        after = time.monotonic()
        time.sleep(1.0)
    assert outcome.state is DeployState.ROLLED_BACK, outcome.reason
    assert outcome.report["verdict"] == "rollback"
    assert 0 < outcome.report["canary_requests"] < len(load.answers)
    assert outcome.report["canary_errors"] > 0
    assert load.versions_since(after + 0.5) == {"v1"}  # all traffic back on stable
    with project.open_store() as store:
        decisions = store.ledger.history.events("staging", (EventKind.RELEASE_DECISION,))
        canary = store.ledger.releases.get(release_name("staging", *faulty.split("@")))
        samples = store.ledger.samples.of("staging")
    assert decisions[-1].data["verdict"] == "rollback"
    assert decisions[-1].data["evidence"]  # e-values and counts, for the report
    assert canary is not None and canary.state is ReleaseState.FAILED
    assert samples  # the time series the judge read is kept


def test_a_good_canary_is_promoted_and_the_stable_release_kept_warm(
    project: Project, tmp_path: Path
) -> None:
    stable = build_app(project, tmp_path, "v1")
    good = build_app(project, tmp_path, "v2")
    assert deploy(project, stable).state is DeployState.SUCCEEDED

    with Load(url_of(project)) as load:
        outcome = deploy(project, good)
        after = time.monotonic()
        time.sleep(0.5)
    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    assert load.failures() == []
    assert load.versions_since(after + 0.3) == {"v2"}
    with project.open_store() as store:
        env = store.ledger.environments.get("staging")
        baseline = store.ledger.releases.get(
            release_name("staging", *stable.split("@")) + "-baseline"
        )
    assert env is not None
    assert env.warm_release == release_name("staging", *stable.split("@"))
    assert baseline is not None and baseline.state is ReleaseState.RETIRED


def test_redeploying_a_known_good_digest_skips_the_analysis(
    project: Project, tmp_path: Path
) -> None:
    v1, v2 = build_app(project, tmp_path, "v1"), build_app(project, tmp_path, "v2")
    assert deploy(project, v1).state is DeployState.SUCCEEDED
    with Load(url_of(project)):
        assert deploy(project, v2).state is DeployState.SUCCEEDED

    outcome = deploy(project, v1)  # back to a digest that succeeded here: the fast path
    assert outcome.state is DeployState.SUCCEEDED
    assert "verdict" not in outcome.report
    with project.open_store() as store:
        steps = store.ledger.history.events("staging", (EventKind.RELEASE_STEP,))
    assert steps and all(step.data["deploy_id"] != outcome.deploy_id for step in steps)


def test_a_paused_canary_waits_for_a_person_and_abort_rolls_it_back(
    tmp_path: Path, staging: Staging
) -> None:
    project = staging(PAUSED)
    v1, v2 = build_app(project, tmp_path, "v1"), build_app(project, tmp_path, "v2")
    assert deploy(project, v1).state is DeployState.SUCCEEDED
    outcomes: list[DeployOutcome] = []
    worker = threading.Thread(target=lambda: outcomes.append(deploy(project, v2)))
    worker.start()

    def paused_at_step_2() -> bool:
        with project.open_store() as store:
            status = release_status(project, store, "staging")
        return status.in_progress and status.progress is not None and status.progress.step == 1

    wait_until(paused_at_step_2, "the canary to reach its pause")
    time.sleep(1.0)
    assert worker.is_alive()  # it waits for a person
    with project.open_store() as store:
        send_command(project, store, "staging", "abort", "reviewer")
    worker.join(timeout=30)
    assert outcomes and outcomes[0].state is DeployState.ROLLED_BACK
    assert "aborted by reviewer" in (outcomes[0].reason or "")


def test_commands_need_a_release_in_progress(project: Project) -> None:
    from conveyor.errors import ConveyorError

    with project.open_store() as store, pytest.raises(ConveyorError, match="no release in"):
        send_command(project, store, "staging", "promote", "someone")


def test_a_canary_failing_its_smoke_test_is_rolled_back_before_any_share(
    tmp_path: Path, project: Project
) -> None:
    """The smoke tests pin the canary's version: it must be in the route table (with no
    share) by then, or the pinned requests go by weight, to the stable release."""
    v1, bad = build_app(project, tmp_path, "v1"), build_app(project, tmp_path, "v2", "bad-smoke")
    assert deploy(project, v1).state is DeployState.SUCCEEDED

    outcome = deploy(project, bad)

    assert outcome.state is DeployState.ROLLED_BACK, outcome
    assert outcome.reason is not None and "smoke tests of the canary failed" in outcome.reason
    canary = release_name("staging", *bad.split("@"))
    with project.open_store() as store:
        shifts = store.ledger.history.events("staging", (EventKind.TRAFFIC_SHIFTED,))
        assert store.ledger.releases.get(canary) is not None
    weights = [e.data["weights"] for e in shifts if e.data["deploy_id"] == outcome.deploy_id]
    assert weights and all(w.get(canary, 0) == 0 for w in weights), weights
    assert {httpx.get(url_of(project)).text for _ in range(10)} == {"v1"}


BLUE_GREEN = """\
      blue_green:
        preview_duration: 1s
        analysis: {interval: 0.3s, min_duration: 0.3s, max_duration: 10s}
        bake: 1s
"""


def test_blue_green_previews_pinned_then_switches_at_once(tmp_path: Path, staging: Staging) -> None:
    project = staging(BLUE_GREEN)
    v1, v2 = build_app(project, tmp_path, "v1"), build_app(project, tmp_path, "v2")
    assert deploy(project, v1).state is DeployState.SUCCEEDED
    with Load(url_of(project)) as load:
        outcome = deploy(project, v2)
        after = time.monotonic()
        time.sleep(0.5)
    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    assert load.failures() == []
    assert load.versions_since(after + 0.2) == {"v2"}
    with project.open_store() as store:
        shifts = store.ledger.history.events("staging", (EventKind.TRAFFIC_SHIFTED,))
    weights = [event.data["weights"] for event in shifts if event.data["deploy_id"] == 2]
    green = release_name("staging", *v2.split("@"))
    # No share in between: the preview had none, then all of the traffic.
    assert {w.get(green, 0) for w in weights} <= {0, 100}
    assert weights[-1][green] == 100


AB_TEST = """\
      ab:
        header: X-Beta
        value: "yes"
        analysis: {interval: 0.3s, min_duration: 0.3s, max_duration: 30s}
"""


def test_an_ab_test_sends_matching_requests_to_the_new_version_until_promoted(
    tmp_path: Path, staging: Staging
) -> None:
    project = staging(AB_TEST)
    v1, v2 = build_app(project, tmp_path, "v1"), build_app(project, tmp_path, "v2")
    assert deploy(project, v1).state is DeployState.SUCCEEDED
    outcomes: list[DeployOutcome] = []
    worker = threading.Thread(target=lambda: outcomes.append(deploy(project, v2)))
    worker.start()

    def testing() -> bool:
        with project.open_store() as store:
            status = release_status(project, store, "staging")
        return status.in_progress and status.progress is not None and status.progress.step == 0

    wait_until(testing, "the A/B test to start")
    url = url_of(project)
    beta = {httpx.get(url, headers={"X-Beta": "yes"}).text for _ in range(20)}
    others = {httpx.get(url, headers={"X-Beta": "no"}).text for _ in range(20)}
    assert (beta, others) == ({"v2"}, {"v1"})

    with project.open_store() as store:
        send_command(project, store, "staging", "promote", "product-owner")
    worker.join(timeout=30)
    assert outcomes and outcomes[0].state is DeployState.SUCCEEDED
    assert {httpx.get(url).text for _ in range(20)} == {"v2"}


ROLLING = """\
      rolling: {max_surge: 1, max_unavailable: 0, min_ready: 0.2s}
"""


def test_a_rolling_deploy_stays_within_its_surge_and_unavailability_limits(
    tmp_path: Path, staging: Staging
) -> None:
    project = staging(ROLLING, replicas=3)
    v1, v2 = build_app(project, tmp_path, "v1"), build_app(project, tmp_path, "v2")
    assert deploy(project, v1).state is DeployState.SUCCEEDED
    with Load(url_of(project)) as load:
        outcome = deploy(project, v2)
        after = time.monotonic()
        time.sleep(0.5)
    assert outcome.state is DeployState.SUCCEEDED, outcome.reason
    assert load.failures() == []
    assert load.versions_since(after + 0.2) == {"v2"}
    with project.open_store() as store:
        shifts = store.ledger.history.events("staging", (EventKind.TRAFFIC_SHIFTED,))
    counts = [
        tuple(int(n) for n in re.findall(r"(\d+) (?:new|old)", event.data["why"]))
        for event in shifts
        if event.data["why"].startswith("rolling:")
    ]
    assert counts[-1] == (3, 0)
    assert len(counts) == 6  # three added, three removed, one at a time
    assert all(3 <= new + old <= 4 for new, old in counts)  # replicas 3, surge 1


KILLABLE = """\
      canary:
        baseline: true
        analysis: {interval: 0.3s, min_duration: 0.5s, max_duration: 20s, inconclusive: promote}
        steps:
          - weight: 30
          - pause: 4s
          - weight: 60
          - pause: 0.5s
"""


def test_a_canary_whose_controller_is_killed_is_resumed_at_its_step(
    tmp_path: Path, staging: Staging, start_cli: Callable[..., CliProcess]
) -> None:
    project = staging(KILLABLE)
    v1, v2 = build_app(project, tmp_path, "v1"), build_app(project, tmp_path, "v2")
    assert deploy(project, v1).state is DeployState.SUCCEEDED
    control = start_cli(["deploy", "staging", v2], project.directory)

    def pausing() -> bool:
        with project.open_store() as store:
            status = release_status(project, store, "staging")
        return status.in_progress and status.progress is not None and status.progress.step == 1

    wait_until(pausing, "the canary to reach its pause")
    control.kill_group()  # SIGKILL: the router and the releases carry on
    control.finish()
    with Load(url_of(project)) as load:
        time.sleep(1.0)
        assert {"v1", "v2"} <= load.versions_since(0.0)  # the canary keeps its share
        result = run_cli(["env", "reconcile", "staging"], project.directory)
    assert result.exit_code == 0, result.stderr
    assert load.failures() == []
    with project.open_store() as store:
        [record] = store.ledger.deploys.of_environment("staging", None)[-1:]
        steps = [
            e.data["step"]
            for e in store.ledger.history.events("staging", (EventKind.RELEASE_STEP,))
            if e.data["deploy_id"] == record.id
        ]
    assert record.state is DeployState.SUCCEEDED
    assert steps == [0, 1, 1, 2, 3]  # resumed at the pause, not from the start
    baseline = release_name("staging", *v1.split("@")) + "-baseline"
    runtime = ProcessRuntime(project.state_dir / "runtime", image_store(project))
    assert baseline not in runtime.releases()  # stopped once promoted, never doubled
