"""DORA from the event log, on a history whose figures were computed by hand
(tests/observe/dora_history.py has the table), and on its edge cases; the CLI's figures
and exit codes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import MakeProject, run_cli
from conveyor.errors import ConveyorError
from conveyor.observe.dora import DoraReport, dora, production_environment
from conveyor.observe.dora_figures import DAY, Band, week_start
from conveyor.service.project import Project
from conveyor.store import events as event_log
from conveyor.store.db import write_transaction
from conveyor.store.records import EventKind
from conveyor.store.store import Store
from observe.dora_history import BASE, H, Writer, write_history

PERIOD = 14 * DAY  # two weeks from BASE: every event of the history

SPEC = """\
version: 1
name: shop
jobs:
  noop: {run: 'true'}
environments:
  staging: {replicas: 1}
  production: {replicas: 1, after: staging}
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Project.locate(tmp_path / "conveyor.yml").open_store() as opened:
        yield opened


@pytest.fixture
def report(store: Store) -> DoraReport:
    write_history(store)
    return dora(store, "production", since=BASE, until=BASE + PERIOD)


def test_deployment_frequency_counts_deploys_that_reached_full_traffic(report: DoraReport) -> None:
    # Deploys 1, 2, 3, 4, 6, 7, 9, 10 reached 100 %; 5 (stopped at 10 %) and staging's 8 did not
    # count: 8 deployments over 14 days = 0.5714/day = 4/week.
    assert [f.deploy_id for f in report.deployment_facts] == [1, 2, 3, 4, 6, 7, 9, 10]
    assert report.deployments == 8
    assert report.days == 14
    assert report.per_day == pytest.approx(8 / 14)
    assert report.per_week == pytest.approx(4.0)


def test_lead_time_runs_from_the_commit_to_full_traffic(report: DoraReport) -> None:
    # Full traffic - commit, in hours: 1-(-1)=2, 25-19=6, 49-45=4, 73-72=1, 169-160=9,
    # 290-286=4, 300-299=1; deploy 7 was made by hand (no run): unknown.
    # Sorted 1,1,2,4,4,6,9: median 4 h; p90 = the ceil(0.9*7)=7th = 9 h.
    assert [f.lead_time for f in report.deployment_facts] == [
        2 * H, 6 * H, 4 * H, 1 * H, 9 * H, None, 4 * H, 1 * H
    ]  # fmt: skip
    assert (report.lead_time.count, report.lead_time.median, report.lead_time.p90) == (
        7,
        4 * H,
        9 * H,
    )
    assert report.without_commit_time == 1


def test_change_failure_rate_counts_rollbacks_kill_switches_and_incidents(
    report: DoraReport,
) -> None:
    # 2: rolled back by a person; 3: flag killed 1 h after; 4: incident 7 h after;
    # 6: incident 1 h after; 9: the judge rolled it back while baking. 7's incident came
    # 27 h after its full traffic (> the 24 h window); 5's rollback is the canary's, before
    # full traffic, and does not fail 4. Staging's kill switch and incident fail nothing here.
    failed = {f.deploy_id: f.failed_by for f in report.deployment_facts if f.failed_by}
    assert failed == {2: "rollback", 3: "flag-kill", 4: "incident", 6: "incident", 9: "rollback"}
    assert report.failed_deployments == 5
    assert report.change_failure_rate == pytest.approx(5 / 8)  # 0.625


def test_recovery_time_runs_from_full_traffic_to_restored(report: DoraReport) -> None:
    # 2: rollback at 27 h - 25 h = 2 h; 3: the kill switch at 50 - 49 = 1 h; 4: resolved at
    # 83 - 73 = 10 h; 6: never resolved, fixed by deploy 7 at 193 - 169 = 24 h; 9: the
    # rollback at 291 - 290 = 1 h. Sorted 1,1,2,10,24: median 2 h, p90 = 5th = 24 h.
    restored = {f.deploy_id: f.restored_by for f in report.deployment_facts if f.restored_by}
    assert restored == {
        2: "rollback", 3: "flag-kill", 4: "incident", 6: "fix-deployed", 9: "rollback"
    }  # fmt: skip
    assert (report.recovery_time.count, report.recovery_time.median) == (5, 2 * H)
    assert report.recovery_time.p90 == 24 * H
    assert report.unrestored == 0
    # Detection (full traffic -> first signal): 2, 1, 7, 1, 1 h: median 1 h, p90 7 h.
    assert (report.time_to_detect.median, report.time_to_detect.p90) == (1 * H, 7 * H)


def test_rework_is_the_first_deployment_within_a_day_of_a_failure(report: DoraReport) -> None:
    # 3 came 49-27 = 22 h after 2's failure; 4: 73-50 = 23 h after 3's; 6: 169-80 = 89 h
    # after 4's (not rework); 7: 193-170 = 23 h after 6's; 10: 300-291 = 9 h after 9's.
    # 4 of 8 = 0.5.
    assert [f.deploy_id for f in report.deployment_facts if f.rework] == [3, 4, 7, 10]
    assert report.rework_rate == pytest.approx(0.5)


def test_the_canary_stopped_one_regression_before_full_traffic(report: DoraReport) -> None:
    # 5: 10 % at 96 h, the judge's rollback verdict at 96.5 h: detected in 0.5 h = 1800 s.
    assert report.canary_stops == 1
    (stop,) = report.stopped_by_canary
    assert (stop.deploy_id, stop.release, stop.time_to_detect) == (5, "v5", 1800.0)
    assert report.canary_time_to_detect.median == 1800.0


def test_bands_and_weekly_trends(report: DoraReport) -> None:
    # 0.57/day: at least weekly -> high; lead median 4 h < 1 day -> elite; 62.5 % > 15 %
    # -> low; recovery median 2 h < 1 day -> high. Overall: the worst, low.
    bands = report.bands
    assert (bands.deployment_frequency, bands.lead_time) == (Band.HIGH, Band.ELITE)
    assert (bands.change_failure_rate, bands.recovery_time) == (Band.LOW, Band.HIGH)
    assert bands.overall is Band.LOW
    first, second = report.weeks
    # Week 1: 1, 2, 3, 4; failed 2, 3, 4 (3/4); leads 2,6,4,1 -> (2+4)/2 = 3 h; recoveries
    # 2,1,10 -> 2 h; rework 3, 4; the canary stop of 5.
    assert (first.week, first.deployments, first.failed) == ("2026-11-02", 4, 3)
    assert first.change_failure_rate == pytest.approx(0.75)
    assert (first.lead_time_median, first.recovery_median) == (3 * H, 2 * H)
    assert (first.rework, first.canary_stops) == (2, 1)
    # Week 2: 6, 7, 9, 10; failed 6, 9; leads 9, 4, 1 -> 4 h; recoveries 24, 1 -> 12.5 h.
    assert (second.week, second.deployments, second.failed) == ("2026-11-09", 4, 2)
    assert (second.lead_time_median, second.recovery_median) == (4 * H, 12.5 * H)
    assert (second.rework, second.canary_stops) == (2, 0)


def test_staging_counts_only_its_own_deploy(store: Store) -> None:
    # 8 is staging's only deploy (full at 194 h, commit 190 h: 4 h); the kill switch 1 h
    # after it fails it there (restored at once); the incident at 196 h comes after that.
    write_history(store)
    staged = dora(store, "staging", since=BASE, until=BASE + PERIOD)
    assert [f.deploy_id for f in staged.deployment_facts] == [8]
    assert staged.lead_time.median == 4 * H
    assert staged.deployment_facts[0].failed_by == "flag-kill"
    assert staged.change_failure_rate == 1.0


def test_a_period_without_deploys(store: Store) -> None:
    report = dora(store, "production", since=BASE, until=BASE + PERIOD)
    assert (report.deployments, report.per_day, report.failed_deployments) == (0, 0.0, 0)
    assert report.change_failure_rate is None and report.rework_rate is None
    assert report.lead_time.median is None and report.recovery_time.p90 is None
    assert report.bands.lead_time is None and report.bands.overall is Band.LOW
    assert [w.deployments for w in report.weeks] == [0, 0]


def test_the_period_bounds_what_counts(store: Store) -> None:
    # Only the second week: 6, 7, 9, 10, with 6's failure and the failures it attributes.
    write_history(store)
    second = dora(store, "production", since=BASE + 168 * H, until=BASE + PERIOD)
    assert [f.deploy_id for f in second.deployment_facts] == [6, 7, 9, 10]
    assert second.failed_deployments == 2
    assert second.canary_stops == 0


def test_a_failure_after_the_next_deployment_belongs_to_that_one(store: Store) -> None:
    w = Writer(store, BASE)
    w.deploy("production", 1, "a", 1, commit=0, previous=None)
    w.deploy("production", 2, "b", 2, commit=1, previous="a")
    w.append(EventKind.FLAG_KILLED, 3, environment="production", flag="f", rollback=True)
    report = dora(store, "production", since=BASE, until=BASE + DAY)
    assert [f.failed_by for f in report.deployment_facts] == [None, "flag-kill"]


def test_malformed_events_are_skipped_not_fatal(store: Store) -> None:
    """Events without the fields DORA reads (a deploy without an id, weights that are not
    a table) count for nothing; the well-formed deploy still counts."""
    w = Writer(store, BASE)
    bad = [
        event_log.event_row(EventKind.DEPLOY_STARTED, BASE, data={"environment": "production"}),
        event_log.event_row(
            EventKind.TRAFFIC_SHIFTED,
            BASE + 1,
            data={"environment": "production", "deploy_id": "x", "weights": [1, 2]},
        ),
        event_log.event_row(EventKind.ROLLBACK, BASE + 2, data={"environment": "production"}),
    ]
    with write_transaction(store.engine) as conn:
        event_log.append(conn, bad)
    w.deploy("production", 7, "ok", 1, commit=0, previous=None)
    report = dora(store, "production", since=BASE, until=BASE + DAY)
    assert report.deployments == 1 and report.failed_deployments == 0


def test_the_default_environment_ends_the_promotion_chain() -> None:
    class Env:
        def __init__(self, after: str | None = None, approval: object = None) -> None:
            self.after, self.approval = after, approval

    assert production_environment({"staging": Env(), "live": Env(after="staging")}) == "live"
    assert production_environment({"dev": Env(), "production": Env()}) == "production"
    assert production_environment({"only": Env()}) == "only"
    with pytest.raises(ConveyorError, match="no single production environment") as raised:
        production_environment({"a": Env(), "b": Env()})
    assert raised.value.hint == "name it: --env ENV"


# --- the CLI -----------------------------------------------------------------------------


def test_cli_prints_the_hand_computed_figures(git_project: MakeProject) -> None:
    project = git_project(SPEC)
    base = week_start(time.time() - 20 * DAY)  # all 300 h of the history in the last 30 days
    with project.project().open_store() as store:
        write_history(store, base)
    shown = run_cli(["insights", "dora", "--since", "30d", "-o", "json"], project.root)
    assert shown.exit_code == 0, shown.stderr
    found = shown.json()
    assert found["environment"] == "production"  # the end of the chain (after: staging)
    assert (found["deployments"], found["failed_deployments"]) == (8, 5)
    assert found["change_failure_rate"] == 0.625
    assert found["lead_time"] == {"count": 7, "median": 4 * H, "p90": 9 * H}
    assert found["recovery_time"]["median"] == 2 * H
    assert (found["rework_deployments"], found["canary_stops"]) == (4, 1)
    assert found["per_day"] == pytest.approx(8 / 30)
    assert found["bands"]["overall"] == "low"
    text = run_cli(["insights", "dora", "--since", "30d"], project.root)
    assert text.exit_code == 0
    assert "62.5 % (5 of 8)" in text.stdout
    assert "median 4h00m, p90 9h00m (n=7)" in text.stdout
    staging = run_cli(["insights", "dora", "--env", "staging", "-o", "json"], project.root)
    assert staging.json()["deployments"] == 1


def test_cli_exit_codes(git_project: MakeProject, tmp_path: Path) -> None:
    project = git_project(SPEC)
    unknown = run_cli(["insights", "dora", "--env", "nowhere", "-o", "json"], project.root)
    assert (unknown.exit_code, unknown.stdout) == (4, "")
    assert json.loads(unknown.stderr)["error"]["code"] == "not_found"
    assert "Traceback" not in unknown.stderr
    for since in ("forever", "nan", "inf", "100000d", "0"):
        bad = run_cli(["insights", "dora", "--since", since], project.root)
        assert bad.exit_code == 2 and "--since" in bad.stderr, since
        assert "Traceback" not in bad.stderr
    ambiguous = git_project(SPEC.replace("production: {replicas: 1, after: staging}", "live: {}"))
    assert run_cli(["insights", "dora"], ambiguous.root).exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(["insights", "dora"], empty).exit_code == 2


def test_a_hand_deploy_takes_the_commit_of_the_run_that_built_its_image(store: Store) -> None:
    # Deploy 1 has no run of its own; run `built` (commit at -3 h) published its image's
    # digest: lead time = 1 h - (-3 h) = 4 h. Deploy 2's image no run built: unknown.
    w = Writer(store, BASE)
    built = w.run(-3)
    store.add_report(built, "build-image", "image", "blob", {"digest": f"sha256:{1:064x}"})
    w.deploy("production", 1, "a", 1, commit=None, previous=None)
    w.deploy("production", 2, "b", 2, commit=None, previous="a")
    report = dora(store, "production", since=BASE, until=BASE + DAY)
    assert [f.lead_time for f in report.deployment_facts] == [4 * H, None]
    assert report.without_commit_time == 1


def test_a_deploy_under_an_approval_takes_the_commit_of_the_approved_run(store: Store) -> None:
    # `conveyor deploy` by hand under run 1's approval (deploy.started's approval.run_id).
    w = Writer(store, BASE)
    approved = w.run(-2)
    w.append(
        EventKind.DEPLOY_STARTED,
        0.5,
        environment="production",
        deploy_id=1,
        release="a",
        digest="sha256:" + "f" * 64,
        approval={"request": 3, "run_id": approved},
    )
    w.append(
        EventKind.TRAFFIC_SHIFTED, 1, environment="production", deploy_id=1, weights={"a": 100}
    )
    report = dora(store, "production", since=BASE, until=BASE + DAY)
    assert report.lead_time.median == 3 * H  # 1 h - (-2 h)
