"""Incidents: the lifecycle with its timeline, suspects with their commits and the flag
changes of the window, time to detect and to restore, and the follow-up requirement."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from conveyor.errors import ConveyorError, NotFoundError
from conveyor.flags.store import FlagLedger
from conveyor.observe import incidents, requirements
from conveyor.observe.alerts import AlertOutcome, receive_alert
from conveyor.observe.incidents import IncidentState
from conveyor.observe.requirements import FiledRequirement
from conveyor.service.project import Project
from conveyor.store.records import EventKind
from conveyor.store.store import Store
from observe import shipping
from observe.shipping import Ship, Shipped, firing

ship = shipping.ship


def opened(shipped: Shipped) -> int:
    receipt = receive_alert(shipped.project, shipped.store, firing("x"))
    assert receipt.outcome is AlertOutcome.INCIDENT and receipt.incident is not None
    return receipt.incident


@pytest.fixture
def filed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def file_requirement(
        project: Project,
        store: Store,
        *,
        title: str,
        body: str,
        labels: Sequence[str] = (),
        source: str,
        actor: str,
    ) -> FiledRequirement:
        calls.append({"title": title, "body": body, "labels": labels, "source": source})
        return FiledRequirement("#7", title, "https://forge.example/issues/7")

    monkeypatch.setattr(requirements, "file_requirement", file_requirement)
    return calls


def test_an_incident_moves_forward_and_resolving_files_a_follow_up(
    ship: Ship, filed: list[dict[str, Any]]
) -> None:
    shipped = ship(bake="500ms")  # an alert after the bake window rolls nothing back
    incident_id = _incident_outside_window(shipped)
    store = shipped.store
    acked = incidents.acknowledge(store, incident_id, "erin", "looking")
    assert acked.state is IncidentState.ACKNOWLEDGED and acked.acknowledged_at is not None
    mitigated = incidents.mitigate(store, incident_id, "erin", "flag off")
    assert mitigated.time_to_restore is not None
    assert mitigated.time_to_restore == pytest.approx(
        mitigated.mitigated_at - mitigated.started_at  # type: ignore[operator]
    )
    with pytest.raises(ConveyorError, match="cannot become acknowledged"):
        incidents.acknowledge(store, incident_id, "erin")
    resolved = incidents.resolve(shipped.project, store, incident_id, "erin", "fixed in #8")
    assert resolved.state is IncidentState.RESOLVED
    assert resolved.requirement == {
        "key": "#7",
        "title": filed[0]["title"],
        "location": "https://forge.example/issues/7",
    }
    [call] = filed
    assert call["source"] == f"incident:{incident_id}"
    assert "fixed in #8" in call["body"]
    assert [(e.entry, e.actor) for e in resolved.timeline] == [
        ("opened", "conveyor-alerts"),
        ("acknowledged", "erin"),
        ("mitigated", "erin"),
        ("resolved", "erin"),
    ]
    states = [e.state for e in store.events() if e.kind == EventKind.INCIDENT_STATE.value]
    assert states == ["acknowledged", "mitigated", "resolved"]
    # Resolved: the next alert opens a new incident.
    again = receive_alert(shipped.project, store, firing("y"))
    assert again.incident not in (None, incident_id)


def _incident_outside_window(shipped: Shipped) -> int:
    time.sleep(max(0.0, _deployed_at(shipped) + 0.55 - time.time()))
    return opened(shipped)


def _deployed_at(shipped: Shipped) -> float:
    return shipped.store.ledger.deploys.of_environment("staging")[-1].started_at


def test_suspects_are_the_releases_of_the_window_with_commits_and_flag_changes(
    ship: Ship,
) -> None:
    shipped = ship(bake="1h")
    FlagLedger(shipped.store.engine).set_enabled("staging", "checkout", True, actor="dana")
    receipt = receive_alert(shipped.project, shipped.store, firing("s"))
    assert receipt.incident is not None
    incident = incidents.get_incident(shipped.store, receipt.incident)
    v1, v2 = shipped.releases
    assert [s["release_id"] for s in incident.suspects] == [v2, v1]  # newest first
    assert incident.suspects[0]["commit"] == shipped.commits[1]
    assert [c["subject"] for c in incident.suspects[0]["commits"]] == ["ship v2"]
    assert [(f["flag"], f["actor"]) for f in incident.flag_changes] == [("checkout", "dana")]
    newest = incident.suspects[0]["deployed_at"]
    assert incident.time_to_detect == pytest.approx(incident.started_at - newest)


def test_listing_filters_and_pages(ship: Ship, filed: list[dict[str, Any]]) -> None:
    shipped = ship(bake="1h")
    first = receive_alert(shipped.project, shipped.store, firing("p1")).incident
    assert first is not None
    incidents.resolve(shipped.project, shipped.store, first, "erin")
    second = receive_alert(shipped.project, shipped.store, firing("p2")).incident
    page = incidents.list_incidents(shipped.store, limit=1)
    assert [i.id for i in page.items] == [second] and page.next_cursor is not None
    rest = incidents.list_incidents(shipped.store, limit=1, cursor=page.next_cursor)
    assert [i.id for i in rest.items] == [first] and rest.next_cursor is None
    open_only = incidents.list_incidents(shipped.store, state=["opened"])
    assert [i.id for i in open_only.items] == [second]
    with pytest.raises(NotFoundError):
        incidents.get_incident(shipped.store, 999)
