"""Alertmanager's webhook and the incidents API on a real server: authentication, bad
bodies (each refused with its reason and recorded), a delivery that rolls back, and the
incident it opened moved through the API."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from conveyor.observe import requirements
from conveyor.observe.requirements import FiledRequirement
from conveyor.service.project import Project
from conveyor.store.records import EventKind
from conveyor.store.store import Store
from deploy.fake_plane import use_fake_plane
from observe.shipping import SPEC, Shipped, deploy_two
from server.conftest import MakeServer, ServerUnderTest

URL = "/api/v1/alerts/alertmanager"


def payload(*alerts: dict[str, Any], version: str = "4") -> dict[str, Any]:
    return {
        "version": version,
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "conveyor",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }


def alert(fingerprint: str, environment: str = "staging", status: str = "firing") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "HighErrorRate", "environment": environment},
        "annotations": {"summary": "5xx above 5 %"},
        "startsAt": "2999-01-01T00:00:00.123456789Z",  # a drifting clock: taken as now
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }


@pytest.fixture
def shipped(
    make_server: MakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[ServerUnderTest, Shipped]:
    use_fake_plane(monkeypatch)
    served = make_server(SPEC.format(bake="1h"))
    context = served.context
    return served, deploy_two(served.project, context.project, context.store, tmp_path)


def refusals(store: Store) -> list[str]:
    return [
        str(e.data["reason"])
        for e in store.events()
        if e.kind == EventKind.ALERT_RECEIVED.value and e.data["outcome"] == "refused"
    ]


def test_a_delivery_without_a_right_token_is_refused_and_recorded(
    shipped: tuple[ServerUnderTest, Shipped],
) -> None:
    served, ship = shipped
    body = payload(alert("f1"))
    assert served.client.post(URL, json=body).status_code == 401
    wrong = {"Authorization": "Bearer cvy_wrong"}
    assert served.client.post(URL, json=body, headers=wrong).status_code == 401
    viewer = served.client.post(URL, json=body, headers=served.as_user("viewer"))
    assert viewer.status_code == 403
    denied = [e for e in ship.store.events() if e.kind == EventKind.AUTH_DENIED.value]
    assert len(denied) == 3
    assert ship.live() == ship.releases[1]


MALFORMED = [
    (b"{not json", "the body is not JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps(payload(alert("f"), version="3")).encode(), "payload version '3'"),
    (json.dumps({**payload(), "alerts": {}}).encode(), "`alerts` must be a list"),
    (json.dumps(payload({**alert("f"), "startsAt": "yesterday"})).encode(), "startsAt"),
    (json.dumps(payload({**alert("f"), "status": "burning"})).encode(), "firing or resolved"),
    (json.dumps(payload({**alert("f"), "labels": {"a": 1}})).encode(), "object of strings"),
    (json.dumps(payload({**alert("f"), "fingerprint": None})).encode(), "fingerprint"),
    (b"[" * 100_000, "not JSON"),
]


def test_a_malformed_body_is_400_with_its_reason_and_recorded(make_server: MakeServer) -> None:
    served = make_server(SPEC.format(bake="1h"))
    headers = {**served.as_user("developer"), "content-type": "application/json"}
    for body, reason in MALFORMED:
        answer = served.client.post(URL, content=body, headers=headers)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid" and reason in answer.json()["reason"]
    recorded = refusals(served.context.store)
    assert len(recorded) == len(MALFORMED)
    assert all(reason in said for (_, reason), said in zip(MALFORMED, recorded, strict=True))


def test_an_oversized_body_is_413(make_server: MakeServer) -> None:
    served = make_server(SPEC.format(bake="1h"))
    huge = b'{"version": "4", "alerts": [' + b" " * (1024 * 1024 + 1) + b"]}"
    answer = served.client.post(URL, content=huge, headers=served.as_user("developer"))
    assert answer.status_code == 413
    assert any("larger than" in said for said in refusals(served.context.store))


def test_a_delivery_rolls_back_once_and_its_incident_moves_through_the_api(
    shipped: tuple[ServerUnderTest, Shipped], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, ship = shipped
    developer = served.as_user("developer")
    body = payload(alert("f1"), alert("f2"), alert("f3", environment="nowhere"))
    answer = served.client.post(URL, json=body, headers=developer)
    assert answer.status_code == 200, answer.text
    found = answer.json()["alerts"]
    assert [a["outcome"] for a in found] == ["rolled-back", "incident", "refused"]
    assert found[0]["rollback"]["to"] == ship.releases[0]
    assert ship.live() == ship.releases[0]
    again = served.client.post(URL, json=body, headers=developer).json()["alerts"]
    assert [a["outcome"] for a in again] == ["duplicate", "duplicate", "refused"]
    [rollback] = [e for e in ship.store.events() if e.kind == EventKind.ROLLBACK.value]
    assert rollback.data["evidence"]["alert"]["fingerprint"] == "f1"

    incident_id = found[0]["incident"]
    viewer = served.as_user("viewer")
    listed = served.client.get("/api/v1/incidents", headers=viewer).json()
    assert [i["id"] for i in listed["items"]] == [incident_id]
    shown = served.client.get(f"/api/v1/incidents/{incident_id}", headers=viewer).json()
    assert shown["state"] == "mitigated"
    assert shown["suspects"][0]["release_id"] == ship.releases[1]
    assert [e["entry"] for e in shown["timeline"]] == ["opened", "mitigated", "alert"]
    refused = served.client.post(f"/api/v1/incidents/{incident_id}/resolve", headers=viewer)
    assert refused.status_code == 403
    filed: list[str] = []

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
        filed.append(source)
        return FiledRequirement("REQ-1", title, "docs/requirements/REQ-1.md")

    monkeypatch.setattr(requirements, "file_requirement", file_requirement)
    resolved = served.client.post(
        f"/api/v1/incidents/{incident_id}/resolve", json={"note": "fixed"}, headers=developer
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["state"] == "resolved"
    assert resolved.json()["requirement"]["key"] == "REQ-1"
    assert filed == [f"incident:{incident_id}"]
    twice = served.client.post(f"/api/v1/incidents/{incident_id}/acknowledge", headers=developer)
    assert twice.status_code == 400 and "cannot become" in twice.json()["reason"]
    assert served.client.get("/api/v1/incidents/999", headers=viewer).status_code == 404


def test_a_policy_may_keep_a_caller_from_raising_alerts_on_an_environment(
    shipped: tuple[ServerUnderTest, Shipped],
) -> None:
    served, ship = shipped
    policy = served.context.project.state_dir / "policy.csv"
    policy.write_text("p, role:developer, alerts, create, staging, deny\n")
    answer = served.client.post(URL, json=payload(alert("f1")), headers=served.as_user("developer"))
    assert answer.status_code == 200
    assert answer.json()["alerts"][0]["outcome"] == "refused"
    assert ship.live() == ship.releases[1]


def test_the_incident_pages_show_and_move_an_incident(
    shipped: tuple[ServerUnderTest, Shipped],
) -> None:
    served, ship = shipped
    body = payload({**alert("late"), "labels": {**alert("late")["labels"], "release": "x"}})
    answer = served.client.post(URL, json=body, headers=served.as_user("developer"))
    assert answer.json()["alerts"][0]["outcome"] == "refused"  # release x is unknown
    named = {**alert("named"), "labels": {**alert("named")["labels"], "release": ship.releases[0]}}
    answer = served.client.post(URL, json=payload(named), headers=served.as_user("developer"))
    incident = answer.json()["alerts"][0]["incident"]
    assert answer.json()["alerts"][0]["outcome"] == "incident"  # names the warm release
    viewer = {**served.as_user("viewer"), "accept": "text/html"}
    listing = served.client.get("/incidents", headers=viewer)
    assert listing.status_code == 200 and f'href="/incidents/{incident}"' in listing.text
    page = served.client.get(f"/incidents/{incident}", headers=viewer)
    assert ship.releases[1] in page.text and "ship v2" in page.text
    assert 'id="move"' not in page.text  # a viewer gets no buttons
    developer = {**served.as_user("developer"), "accept": "text/html"}
    assert 'id="move"' in served.client.get(f"/incidents/{incident}", headers=developer).text
    moved = served.client.post(
        f"/incidents/{incident}/acknowledge", data={"note": "on it"}, headers=developer
    )
    assert moved.status_code == 303
    shown = served.client.get(f"/api/v1/incidents/{incident}", headers=viewer).json()
    assert shown["state"] == "acknowledged" and shown["timeline"][-1]["note"] == "on it"
    bogus = served.client.post(f"/incidents/{incident}/explode", headers=developer)
    assert bogus.status_code == 404


def test_alerts_and_incidents_are_live_under_their_topic() -> None:
    from conveyor.server.events import topics_of
    from conveyor.store.records import EventRecord

    for kind in ("alert.received", "incident.opened", "incident.state", "incident.note"):
        event = EventRecord(1, 0.0, kind, None, None, None, None, None, {})
        assert topics_of(event) == {"incidents"}


def test_the_incidents_commands_against_a_server(
    shipped: tuple[ServerUnderTest, Shipped], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import run_cli

    served, ship = shipped
    answer = served.client.post(URL, json=payload(alert("r1")), headers=served.as_user("developer"))
    incident = answer.json()["alerts"][0]["incident"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("CONVEYOR_TOKEN", served.tokens["developer"])
    listed = run_cli(["--server", served.url, "incidents", "list", "-o", "json"], elsewhere)
    assert listed.exit_code == 0, listed.stderr
    local = run_cli(["incidents", "list", "-o", "json"], ship.git.root)
    assert listed.json() == local.json()  # the same JSON, remote or local
    shown = run_cli(["--server", served.url, "incidents", "show", str(incident)], elsewhere)
    assert f"suspect {ship.releases[1]}" in shown.stdout
    step_back = run_cli(["--server", served.url, "incidents", "ack", str(incident)], elsewhere)
    assert step_back.exit_code == 2 and "cannot become acknowledged" in step_back.stderr
    monkeypatch.setenv("CONVEYOR_TOKEN", served.tokens["viewer"])
    refused = run_cli(["--server", served.url, "incidents", "mitigate", str(incident)], elsewhere)
    assert refused.exit_code == 1  # 403: a viewer may not
