"""The watch's SLO evaluator: each alert that starts or stops firing goes to the intake
once, with the labels and the stable fingerprint the intake deduplicates on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from textwrap import dedent

import pytest

from conftest import GitProject, MakeProject, run_cli
from conveyor.deploy.model import ReleaseSignals, SignalSample
from conveyor.deploy.sampler import to_row
from conveyor.observe import alerts, slo_watch, watch
from conveyor.observe.alerts import Alert, AlertOutcome, AlertSource, AlertStatus
from conveyor.observe.burn import Severity
from conveyor.service.project import Project
from conveyor.store.records import EventKind
from conveyor.store.store import Store

SPEC = dedent(
    """\
    version: 1
    jobs:
      build: {run: make}
    environments:
      production:
        slos:
          - kind: availability
            objective: 99
            time_scale: 60     # page windows 1m/5s and 6m/30s, ticket 72m/6m
      staging: {}
    """
)


class Intake:
    def __init__(self) -> None:
        self.received: list[Alert] = []

    def __call__(self, project: Project, store: Store, alert: Alert) -> AlertOutcome:
        self.received.append(alert)
        return AlertOutcome.INCIDENT


@pytest.fixture
def intake(monkeypatch: pytest.MonkeyPatch) -> Intake:
    fake = Intake()
    monkeypatch.setattr(alerts, "receive", fake)
    return fake


@pytest.fixture
def production(git_project: MakeProject) -> Iterator[tuple[Project, Store]]:
    project = git_project(SPEC).project()
    with project.open_store() as store:
        store.ledger.environments.ensure("production", 1, 2)
        live(store, "r1")
        yield project, store


def live(store: Store, release: str) -> None:
    store.ledger.environments.set_intent(
        "production",
        routes={"backends": []},
        live=release,
        warm=None,
        event=EventKind.TRAFFIC_SHIFTED,
        actor=None,
        data={},
    )


def add_samples(store: Store, start: float, seconds: range, failing_until: int = 121) -> None:
    """r1 at 10 req/s from `start`; from second 100 to `failing_until`, half fail."""
    rows = []
    for second in seconds:
        bad = 5 * (min(second, failing_until) - 100) if second > 100 else 0
        signals = ReleaseSignals("r1", 10 * second, 0, bad, 0)
        rows.append(to_row(SignalSample("production", "r1", start + second, signals, None, 100)))
    store.ledger.samples.add(rows)


def test_the_consumer_is_registered() -> None:
    assert "conveyor.observe.slo_watch:consume" in watch.CONSUMERS


def test_a_burn_fires_a_page_and_a_ticket_once_then_the_page_resolves(
    production: tuple[Project, Store], intake: Intake
) -> None:
    project, store = production
    now = time.time()
    start = now - 120
    # two minutes at 10 req/s, the last 20 s half failing (100 bad requests)
    add_samples(store, start, range(0, 121))

    slo_watch.consume(project, store, "production", now)

    assert [(a.status, a.labels["severity"]) for a in intake.received] == [
        (AlertStatus.FIRING, "page"),
        (AlertStatus.FIRING, "ticket"),
    ]
    page = intake.received[0]
    assert page.source is AlertSource.CONVEYOR
    assert dict(page.labels) == {
        "alertname": "ErrorBudgetBurn",
        "environment": "production",
        "slo": "availability",
        "severity": "page",
        "release": "r1",
    }
    assert page.fingerprint == slo_watch.fingerprint("production", "availability", Severity.PAGE)
    assert len(page.fingerprint) == 16
    assert page.starts_at == now and page.ends_at is None
    # both page rows burn: 100 of 600 over the minute (16.7x), 100 of 1200 over 6m (8.3x)
    assert "16.7x over 1m00s" in page.annotations["summary"]
    assert "8.3x over 6m00s" in page.annotations["summary"]

    # Still burning a second later, and a rollback changed the live release: nothing new,
    # the same alerts (one fingerprint each) still fire.
    live(store, "r0")
    add_samples(store, start, range(121, 122))
    slo_watch.consume(project, store, "production", now + 1)
    assert len(intake.received) == 2

    # 40 s of clean traffic: the 5s and 30s windows are clean, the page resolves; the
    # ticket's 6m window still holds the errors.
    add_samples(store, start, range(122, 162), failing_until=121)
    slo_watch.consume(project, store, "production", now + 41)

    resolved = intake.received[2:]
    assert [(a.status, a.labels["severity"]) for a in resolved] == [(AlertStatus.RESOLVED, "page")]
    assert resolved[0].fingerprint == page.fingerprint
    assert (resolved[0].starts_at, resolved[0].ends_at) == (now, now + 41)
    assert resolved[0].labels["release"] == "r0"


def test_an_environment_without_slos_sends_nothing(
    production: tuple[Project, Store], intake: Intake
) -> None:
    project, store = production
    slo_watch.consume(project, store, "staging", time.time())
    slo_watch.consume(project, store, "nowhere", time.time())
    assert intake.received == []


def test_an_alert_the_intake_failed_to_take_is_sent_again(
    production: tuple[Project, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, store = production
    now = time.time()
    add_samples(store, now - 120, range(0, 121))
    calls: list[Alert] = []

    def failing(project: Project, store: Store, alert: Alert) -> AlertOutcome:
        calls.append(alert)
        raise RuntimeError("the intake is down")

    monkeypatch.setattr(alerts, "receive", failing)
    with pytest.raises(RuntimeError):
        slo_watch.consume(project, store, "production", now)
    with pytest.raises(RuntimeError):
        slo_watch.consume(project, store, "production", now)
    assert [alert.labels["severity"] for alert in calls] == ["page", "page"]


def test_slo_status_shows_the_budget_and_what_fires(git_project: MakeProject) -> None:
    project: GitProject = git_project(SPEC)
    now = time.time()
    with project.project().open_store() as store:
        add_samples(store, now - 120, range(0, 121))

    found = run_cli(["slo", "status", "-o", "json"], project.root)
    text = run_cli(["slo", "status", "--env", "production"], project.root)
    unknown = run_cli(["slo", "status", "--env", "nowhere"], project.root)

    assert found.exit_code == 0, found.stderr
    [status] = found.json()["items"]
    assert (status["environment"], status["slo"], status["time_scale"]) == (
        "production",
        "availability",
        60,
    )
    # 100 bad of ~1200 over the rolling window, against a 1 % budget: overspent
    assert status["budget_remaining"] < 0
    assert [burn["window"] for burn in status["burn_rates"]] == [5, 30, 60, 360, 4320]
    assert [f["severity"] for f in status["firing"]] == ["page", "page", "ticket"]
    assert text.exit_code == 0 and "production/availability" in text.stdout
    assert "page: " in text.stdout and "ticket: " in text.stdout
    assert unknown.exit_code == 4 and "no environment 'nowhere'" in unknown.stderr
