"""GET /api/v1/insights (as `conveyor insights summary -o json`) and GET
/api/v1/environments/{environment}/notes (as `conveyor release notes -o json`)."""

from __future__ import annotations

import time

import pytest
from markupsafe import escape

from conftest import GIT_ENV
from observe.test_insights import SPEC, seed
from server.conftest import MakeServer


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)


def test_the_api_answers_the_summary(make_server: MakeServer) -> None:
    served = make_server(SPEC, workers=0)
    seed(served.project, time.time())

    answer = served.client.get("/api/v1/insights?since=30d", headers=served.as_user("viewer"))
    anonymous = served.client.get("/api/v1/insights")
    bad = served.client.get("/api/v1/insights?since=forever", headers=served.as_user("viewer"))

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [item["kind"] for item in body["items"]][:2] == ["incident", "regression"]
    assert body["vulnerabilities"][0]["package"] == "jinja2"
    assert anonymous.status_code == 401
    assert bad.status_code == 400 and "since" in bad.json()["reason"]


def test_release_notes_of_an_unknown_environment_are_not_found(make_server: MakeServer) -> None:
    served = make_server(SPEC, workers=0)

    answer = served.client.get(
        "/api/v1/environments/production/notes", headers=served.as_user("viewer")
    )
    anonymous = served.client.get("/api/v1/environments/production/notes")

    assert answer.status_code == 404, answer.text
    assert answer.json()["error"] == "not_found"
    assert anonymous.status_code == 401


def test_the_insights_page_lists_the_actionable_items(make_server: MakeServer) -> None:
    served = make_server(SPEC, workers=0)
    seed(served.project, time.time())
    body = served.client.get("/api/v1/insights?since=30d", headers=served.as_user("viewer"))
    items = body.json()["items"]

    page = served.client.get("/insights?since=30d", headers=served.as_user("viewer"))
    anonymous = served.client.get("/insights", headers={"accept": "text/html"})
    bad = served.client.get("/insights?since=forever", headers=served.as_user("viewer"))

    assert page.status_code == 200, page.text
    assert items, "the seeded history has actionable items"
    for item in items:  # every item the API lists, by its id, with its state
        assert f'data-item="{item["id"]}"' in page.text
    assert str(escape(items[0]["title"])) in page.text
    assert '<a href="/insights/dora">DORA metrics</a>' in page.text
    assert anonymous.status_code in (401, 303)
    assert bad.status_code == 400
