"""Flags through the API: read, turn on, roll out and kill, each recorded as the CLI's
event with the caller as actor; the kill switch needs the update action."""

from __future__ import annotations

import pytest

from conveyor.flags.store import FlagLedger
from conveyor.store.records import EventKind
from server.conftest import MakeServer, ServerUnderTest

SPEC = """\
version: 1
name: shop
jobs:
  noop: {run: 'true'}
environments:
  staging:
    replicas: 1
"""
BASE = "/api/v1/environments/staging/flags"


@pytest.fixture
def shop(make_server: MakeServer) -> ServerUnderTest:
    served = make_server(SPEC)
    FlagLedger(served.context.store.engine).set_enabled("staging", "banner", True, actor="cli")
    return served


def test_flags_are_listed_and_shown_with_their_history(shop: ServerUnderTest) -> None:
    listed = shop.client.get(BASE, headers=shop.as_user("viewer"))
    assert listed.status_code == 200
    body = listed.json()
    assert body["environment"] == "staging" and body["version"] == 1
    assert [(i["flag"]["name"], i["flag"]["enabled"]) for i in body["items"]] == [("banner", True)]
    one = shop.client.get(f"{BASE}/banner", headers=shop.as_user("viewer")).json()
    assert one["flag"]["flag"]["name"] == "banner"
    assert [(e["data"]["change"], e["actor"]) for e in one["history"]] == [("enabled", "cli")]


def test_unknown_environments_and_flags_answer_404(shop: ServerUnderTest) -> None:
    viewer = shop.as_user("viewer")
    assert shop.client.get("/api/v1/environments/nope/flags", headers=viewer).status_code == 404
    assert shop.client.get(f"{BASE}/nope", headers=viewer).status_code == 404
    killed = shop.client.post(f"{BASE}/nope/kill", json={}, headers=shop.as_user("developer"))
    assert killed.status_code == 404


def test_a_kill_through_the_api_is_recorded_with_the_caller(shop: ServerUnderTest) -> None:
    url = f"{BASE}/banner/kill"
    assert shop.client.post(url, json={}).status_code == 401
    assert shop.client.post(url, json={}, headers=shop.as_user("viewer")).status_code == 403
    assert shop.client.post(url, json={}, headers=shop.as_user("reviewer")).status_code == 403
    assert FlagLedger(shop.context.store.engine).flag("staging", "banner").flag.enabled
    killed = shop.client.post(url, json={"reason": "5xx"}, headers=shop.as_user("developer"))
    assert killed.status_code == 200
    assert killed.json()["killed"] is True and killed.json()["record"]["flag"]["enabled"] is False
    kills = [e for e in shop.context.store.events() if e.kind == EventKind.FLAG_KILLED.value]
    assert [(e.actor, e.data["flag"], e.data.get("reason")) for e in kills] == [
        ("developer", "banner", "5xx")
    ]
    again = shop.client.post(url, json={}, headers=shop.as_user("developer"))
    assert again.json()["killed"] is False


def test_set_and_rollout_change_the_flag_as_the_cli_does(shop: ServerUnderTest) -> None:
    dev = shop.as_user("developer")
    off = shop.client.put(f"{BASE}/banner", json={"enabled": False}, headers=dev)
    assert off.status_code == 200 and off.json()["flag"]["enabled"] is False
    rolled = shop.client.post(f"{BASE}/fresh/rollout", json={"percentage": 25}, headers=dev)
    assert rolled.status_code == 200
    assert rolled.json()["flag"]["enabled"] is True
    assert "25" in str(rolled.json()["flag"]["strategies"])
    bad = shop.client.post(f"{BASE}/fresh/rollout", json={"percentage": 250}, headers=dev)
    assert bad.status_code == 422
    history = FlagLedger(shop.context.store.engine).history("staging")
    assert [(e.data["change"], e.actor) for e in history][-2:] == [
        ("disabled", "developer"),
        ("rollout", "developer"),
    ]
