"""The alert intake: a rollback inside the bake window, an incident outside it, duplicates,
a storm that rolls back once, and every bad alert refused and recorded."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest

from conveyor.observe import incidents
from conveyor.observe.alerts import (
    Alert,
    AlertOutcome,
    AlertSource,
    AlertStatus,
    receive,
    receive_alert,
)
from conveyor.store.records import EventKind
from observe import shipping
from observe.shipping import Ship, Shipped, firing

ship = shipping.ship


def outcomes(shipped: Shipped) -> list[str]:
    return [str(e.data["outcome"]) for e in shipped.events(EventKind.ALERT_RECEIVED)]


def test_an_alert_inside_the_bake_window_rolls_back_with_the_alert_as_evidence(
    ship: Ship,
) -> None:
    shipped = ship(bake="1h")
    v1, v2 = shipped.releases
    assert shipped.live() == v2
    receipt = receive_alert(shipped.project, shipped.store, firing("abc123"))
    assert receipt.outcome is AlertOutcome.ROLLED_BACK, receipt.reason
    assert shipped.live() == v1
    [rollback] = shipped.events(EventKind.ROLLBACK)
    assert rollback.actor == "conveyor-alerts"
    assert (rollback.data["from"], rollback.data["to"]) == (v2, v1)
    evidence = rollback.data["evidence"]
    assert evidence["alert"]["fingerprint"] == "abc123"
    assert evidence["alert"]["labels"]["alertname"] == "HighErrorRate"
    assert evidence["incident"] == receipt.incident
    assert outcomes(shipped) == ["rolled-back"]
    # The rollback opened an incident already mitigated, naming v2 and its commit.
    assert receipt.incident is not None
    incident = incidents.get_incident(shipped.store, receipt.incident)
    assert incident.state is incidents.IncidentState.MITIGATED
    assert incident.suspects[0]["release_id"] == v2
    assert incident.suspects[0]["commit"] == shipped.commits[1]
    assert incident.time_to_restore is not None and incident.time_to_detect is not None
    assert [e.entry for e in incident.timeline] == ["opened", "mitigated"]


def test_an_alert_after_the_bake_window_opens_an_incident_and_rolls_nothing_back(
    ship: Ship,
) -> None:
    shipped = ship(bake="50ms")
    time.sleep(0.1)
    receipt = receive_alert(shipped.project, shipped.store, firing("late"))
    assert receipt.outcome is AlertOutcome.INCIDENT
    assert "after its bake window" in receipt.reason
    assert shipped.live() == shipped.releases[1]
    assert shipped.events(EventKind.ROLLBACK) == []
    assert receipt.incident is not None
    incident = incidents.get_incident(shipped.store, receipt.incident)
    assert incident.state is incidents.IncidentState.OPENED
    # A second alert joins the open incident rather than opening another.
    other = receive_alert(shipped.project, shipped.store, firing("late-2"))
    assert other.incident == receipt.incident
    assert len(shipped.events(EventKind.INCIDENT_OPENED)) == 1


def test_the_same_fingerprint_twice_is_a_duplicate(ship: Ship) -> None:
    shipped = ship()
    assert receive(shipped.project, shipped.store, firing("dup")) is AlertOutcome.ROLLED_BACK
    assert receive(shipped.project, shipped.store, firing("dup")) is AlertOutcome.DUPLICATE
    assert len(shipped.events(EventKind.ROLLBACK)) == 1
    assert outcomes(shipped) == ["rolled-back", "duplicate"]
    # An evaluator repeating it every second: counted, one event a minute at most.
    for _ in range(5):
        again = receive_alert(shipped.project, shipped.store, firing("dup"))
    assert again.outcome is AlertOutcome.DUPLICATE and "repeated 6 times" in again.reason
    assert outcomes(shipped) == ["rolled-back", "duplicate"]


def test_an_alert_storm_rolls_back_once(ship: Ship) -> None:
    shipped = ship()
    found: list[AlertOutcome] = []
    barrier = threading.Barrier(12)

    def send(number: int) -> None:
        barrier.wait()
        found.append(receive(shipped.project, shipped.store, firing(f"storm-{number}")))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(found).count(AlertOutcome.ROLLED_BACK) == 1, found
    assert set(found) == {AlertOutcome.ROLLED_BACK, AlertOutcome.INCIDENT}
    assert len(shipped.events(EventKind.ROLLBACK)) == 1
    assert len(shipped.events(EventKind.INCIDENT_OPENED)) == 1
    assert shipped.live() == shipped.releases[0]


def test_bad_alerts_are_refused_and_recorded_without_a_rollback(ship: Ship) -> None:
    shipped = ship()
    unknown_env = firing("a", environment="nowhere")
    unknown_release = firing("b", release="staging-app-000000000000")
    no_env = dataclasses.replace(firing("c"), labels={"alertname": "X"})
    bad_fingerprint = firing("not a fingerprint; drop table")
    not_strings = dataclasses.replace(firing("d"), labels={"environment": 3})  # type: ignore[dict-item]
    notes = {f"note{n}": "x" * 4000 for n in range(5)}
    too_large = dataclasses.replace(firing("e"), annotations=notes)
    reasons = []
    for alert in (unknown_env, unknown_release, no_env, bad_fingerprint, not_strings, too_large):
        receipt = receive_alert(shipped.project, shipped.store, alert)
        assert receipt.outcome is AlertOutcome.REFUSED, alert
        reasons.append(receipt.reason)
    assert "unknown environment 'nowhere'" in reasons[0]
    assert "unknown release" in reasons[1]
    assert "no `environment` label" in reasons[2]
    assert "fingerprint" in reasons[3]
    assert "object of strings" in reasons[4]
    assert "larger than" in reasons[5]
    assert outcomes(shipped) == ["refused"] * 6
    assert shipped.events(EventKind.ROLLBACK) == []
    assert shipped.live() == shipped.releases[1]


def test_an_alert_naming_a_release_that_is_not_live_rolls_nothing_back(ship: Ship) -> None:
    shipped = ship()
    receipt = receive_alert(
        shipped.project, shipped.store, firing("old", release=shipped.releases[0])
    )
    assert receipt.outcome is AlertOutcome.INCIDENT
    assert "not the live release" in receipt.reason
    assert shipped.live() == shipped.releases[1]


def test_an_alert_that_began_before_the_release_rolls_nothing_back(ship: Ship) -> None:
    shipped = ship()
    early = dataclasses.replace(firing("early"), starts_at=time.time() - 600)
    receipt = receive_alert(shipped.project, shipped.store, early)
    assert receipt.outcome is AlertOutcome.INCIDENT
    assert "began before" in receipt.reason
    assert shipped.events(EventKind.ROLLBACK) == []


def test_a_resolved_notification_is_recorded_and_the_fingerprint_may_act_again(
    ship: Ship,
) -> None:
    shipped = ship(bake="50ms")
    time.sleep(0.1)
    first = receive_alert(shipped.project, shipped.store, firing("flappy"))
    resolved = dataclasses.replace(firing("flappy"), status=AlertStatus.RESOLVED)
    answer = receive_alert(shipped.project, shipped.store, resolved)
    assert answer.outcome is AlertOutcome.RESOLVED and answer.incident == first.incident
    assert first.incident is not None
    timeline = incidents.get_incident(shipped.store, first.incident).timeline
    assert timeline[-1].note == "HighErrorRate resolved"
    again = receive_alert(shipped.project, shipped.store, firing("flappy"))
    assert again.outcome is AlertOutcome.INCIDENT  # not a duplicate once resolved
    assert outcomes(shipped) == ["incident", "resolved", "incident"]


def test_an_environment_with_automatic_rollback_off_opens_an_incident(ship: Ship) -> None:
    shipped = ship()
    spec = shipped.git.spec
    spec.write_text(spec.read_text().replace("bake: 1h", "bake: 1h\n      rollback: false"))
    receipt = receive_alert(shipped.project, shipped.store, firing("off"))
    assert receipt.outcome is AlertOutcome.INCIDENT
    assert "automatic rollback is off" in receipt.reason


def test_conveyors_own_evaluator_uses_the_same_path(ship: Ship) -> None:
    shipped = ship()
    own = Alert(
        source=AlertSource.CONVEYOR,
        status=AlertStatus.FIRING,
        fingerprint="slo-availability-page",
        labels={"environment": "staging", "slo": "availability", "severity": "page"},
        starts_at=time.time(),
    )
    assert receive(shipped.project, shipped.store, own) is AlertOutcome.ROLLED_BACK
    [rollback] = shipped.events(EventKind.ROLLBACK)
    assert rollback.data["evidence"]["alert"]["source"] == "conveyor"


def test_the_same_release_deployed_again_after_a_rollback_may_be_rolled_back_again(
    ship: Ship,
) -> None:
    from conveyor.service import environments

    shipped = ship()
    assert receive(shipped.project, shipped.store, firing("first")) is AlertOutcome.ROLLED_BACK
    deploys = shipped.store.ledger.deploys.of_environment("staging")
    image = f"{deploys[-1].repository}@{deploys[-1].digest}"
    environments.deploy(shipped.project, shipped.store, "staging", image, actor="dana")
    assert shipped.live() == shipped.releases[1]
    second = receive_alert(shipped.project, shipped.store, firing("second"))
    assert second.outcome is AlertOutcome.ROLLED_BACK, second.reason
    assert shipped.live() == shipped.releases[0]
    assert len(shipped.events(EventKind.ROLLBACK)) == 2
    # The release deployed again is a new suspect: a new incident, mitigated by the rollback.
    assert len(shipped.events(EventKind.INCIDENT_OPENED)) == 2
    assert second.incident is not None
    incident = incidents.get_incident(shipped.store, second.incident)
    assert incident.state is incidents.IncidentState.MITIGATED


def test_a_rollback_that_fails_leaves_an_incident_saying_why(
    ship: Ship, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.errors import InfrastructureError
    from conveyor.service import environments

    shipped = ship()
    working = environments.rollback
    calls: list[str] = []

    def broken_once(*args: Any, **kwargs: Any) -> Any:
        calls.append("rollback")
        if len(calls) == 1:
            raise InfrastructureError("staging's router does not answer")
        return working(*args, **kwargs)

    monkeypatch.setattr(environments, "rollback", broken_once)
    receipt = receive_alert(shipped.project, shipped.store, firing("broken"))
    assert receipt.outcome is AlertOutcome.INCIDENT
    assert receipt.reason == "the automatic rollback failed: staging's router does not answer"
    assert receipt.incident is not None
    incident = incidents.get_incident(shipped.store, receipt.incident)
    assert incident.state is incidents.IncidentState.OPENED
    assert incident.timeline[-1].note == receipt.reason
    assert outcomes(shipped) == ["incident"]
    # The failed attempt claims nothing: a later alert may still roll back.
    later = receive_alert(shipped.project, shipped.store, firing("later"))
    assert later.outcome is AlertOutcome.ROLLED_BACK, later.reason
