"""The app's front door: health, identity, 401 before anything, the OpenAPI document."""

from __future__ import annotations

from server.conftest import ServerUnderTest


def test_healthz_answers_without_a_login(served: ServerUnderTest) -> None:
    assert served.client.get("/healthz").json()["status"] == "ok"


def test_whoami_needs_a_token(served: ServerUnderTest) -> None:
    assert served.client.get("/api/v1/whoami").status_code == 401
    bad = {"Authorization": "Bearer cvy_000000000000_nope"}
    assert served.client.get("/api/v1/whoami", headers=bad).status_code == 401
    me = served.client.get("/api/v1/whoami", headers=served.as_user("reviewer")).json()
    assert me == {"name": "reviewer", "roles": ["reviewer"], "via": "token"}


def test_the_home_page_needs_a_login_and_then_renders(served: ServerUnderTest) -> None:
    assert served.client.get("/").status_code == 401
    page = served.client.get("/", headers=served.as_user("viewer"))
    assert page.status_code == 200
    assert "<title>" in page.text and "viewer" in page.text


def test_the_openapi_document_is_served(served: ServerUnderTest) -> None:
    doc = served.client.get("/api/v1/openapi.json").json()
    assert doc["info"]["title"] == "Conveyor"
    assert "/api/v1/whoami" in doc["paths"]


def test_static_assets_are_served_locally(served: ServerUnderTest) -> None:
    css = served.client.get("/static/conveyor.css")
    assert css.status_code == 200 and "--accent" in css.text
