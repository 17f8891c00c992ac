"""An environment's replica logs through a real server: the API (the CLI's -o json
shape, paged, filtered, masked) and the UI page linked from the environment page."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest

from conveyor.deploy.runtimes.logs import LogLimits, RotatingLog, stamp
from server.conftest import MakeServer, ServerUnderTest

SPEC = """\
version: 1
name: shop
jobs:
  build:
    run: echo built
environments:
  staging:
    secrets: [API_TOKEN]
    health:
      readiness: {path: /healthz}
"""
TOKEN = "tok_Zx8Cv6Bn4Mq2"
T0 = 1_796_000_000.0
V1, V2 = "staging-shop-aaaaaaaaaaaa", "staging-shop-bbbbbbbbbbbb"
LOGS = "/api/v1/environments/staging/logs"


@pytest.fixture
def shop(make_server: MakeServer, monkeypatch: pytest.MonkeyPatch) -> ServerUnderTest:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    served = make_server(SPEC)
    state = served.context.project.state_dir
    for release, replica, offset, lines in [
        (V1, 0, 0, [f"starting with token {TOKEN}", "GET / 200"]),
        (V2, 0, 10, ['{"level": "error", "message": "<b>checkout</b> failed", "order": 7}']),
        (V2, 1, 20, [f"ERROR:shop.pay:refused {TOKEN}", '{"msg": "INFO: retrying", "v": NaN}']),
    ]:
        folder = state / "runtime" / "releases" / release
        folder.mkdir(parents=True, exist_ok=True)
        log = RotatingLog(folder / f"replica-{replica}.log", LogLimits())
        log.write(
            b"".join(stamp(T0 + offset + n) + text.encode() + b"\n" for n, text in enumerate(lines))
        )
        log.close()
        served.context.store.ledger.releases.register(
            "staging", release, "shop", "sha256:" + "0" * 64, [8080]
        )
    return served


def get_logs(shop: ServerUnderTest, **params: str | int) -> dict[str, Any]:
    answer = shop.client.get(LOGS, params=params, headers=shop.as_user("viewer"))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def messages(body: dict[str, Any]) -> list[str]:
    return [item["message"] for item in body["items"]]


def test_the_api_pages_through_every_line_newest_first_masked(shop: ServerUnderTest) -> None:
    first = get_logs(shop, limit=2)
    assert messages(first) == ["INFO: retrying", "refused ***"]
    second = get_logs(shop, limit=2, cursor=str(first["next_cursor"]))
    third = get_logs(shop, limit=2, cursor=str(second["next_cursor"]))
    assert messages(second) == ["<b>checkout</b> failed", "GET / 200"]
    assert messages(third) == ["starting with token ***"]
    assert third["next_cursor"] is None
    assert TOKEN not in json.dumps([first, second, third])
    error = second["items"][0]
    assert error == {
        "release": V2,
        "replica": 0,
        "received": T0 + 10,
        "time": T0 + 10,
        "level": "error",
        "message": "<b>checkout</b> failed",
        "logger": None,
        "fields": {"order": 7},
    }


def test_the_api_filters_as_the_cli_does(shop: ServerUnderTest) -> None:
    assert messages(get_logs(shop, level="error")) == ["refused ***", "<b>checkout</b> failed"]
    assert messages(get_logs(shop, release="staging-shop-a")) == [
        "GET / 200",
        "starting with token ***",
    ]
    [retrying] = get_logs(shop, grep="RETRY")["items"]
    assert retrying["fields"] == {"v": "nan"}  # strict JSON: a replica's NaN as text
    assert get_logs(shop, since="1m")["items"] == []  # every line is years old


BAD = [
    ({"since": "last tuesday"}, 400, "invalid"),
    ({"level": "loud"}, 400, "invalid"),
    ({"cursor": "garbage"}, 400, "invalid"),
    ({"release": "staging-shop-"}, 404, "not_found"),  # names both releases
]


def test_bad_filters_are_a_clear_error(shop: ServerUnderTest) -> None:
    for params, status, error in BAD:
        answer = shop.client.get(LOGS, params=params, headers=shop.as_user("viewer"))
        assert answer.status_code == status, params
        assert answer.json()["error"] == error and answer.json()["reason"], params


def test_the_api_needs_a_login_and_knows_its_environments(shop: ServerUnderTest) -> None:
    assert shop.client.get(LOGS).status_code == 401
    answer = shop.client.get("/api/v1/environments/nowhere/logs", headers=shop.as_user("viewer"))
    assert answer.status_code == 404
    document = shop.client.get("/api/v1/openapi.json").json()
    assert document["paths"]["/api/v1/environments/{environment}/logs"]["get"]["summary"]


def test_the_ui_page_shows_the_lines_escaped_with_their_filters(shop: ServerUnderTest) -> None:
    environment = shop.client.get("/environments/staging", headers=shop.as_user("viewer"))
    assert environment.status_code == 200
    assert 'href="/environments/staging/logs"' in environment.text

    page = shop.client.get(
        "/environments/staging/logs", params={"level": "error"}, headers=shop.as_user("viewer")
    )
    assert page.status_code == 200
    assert html.escape("<b>checkout</b> failed") in page.text  # shown, never rendered
    assert "refused ***" in page.text and TOKEN not in page.text
    assert "GET / 200" not in page.text  # filtered out
    assert '<option value="error" selected>' in page.text

    older = shop.client.get(
        "/environments/staging/logs", params={"since": "soon"}, headers=shop.as_user("viewer")
    )
    assert older.status_code == 400
    assert "neither a duration nor a time" in html.unescape(older.text)
    assert shop.client.get("/environments/staging/logs").status_code in (401, 303, 307)
