"""Health, version, OpenAPI and the HTML catalogue page."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app


def test_healthz_reports_ok_and_the_version(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "1.2.3"}


def test_version_comes_from_shop_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_VERSION", "2.0.0-rc1")

    with TestClient(create_app(str(tmp_path / "shop.db"))) as client:
        assert client.get("/version").json() == {"version": "2.0.0-rc1"}
        assert client.get("/healthz").json()["version"] == "2.0.0-rc1"


def test_version_defaults_to_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOP_VERSION", raising=False)

    with TestClient(create_app(str(tmp_path / "shop.db"))) as client:
        assert client.get("/version").json() == {"version": "dev"}


def test_db_defaults_to_shop_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHOP_DB", raising=False)
    monkeypatch.chdir(tmp_path)

    with TestClient(create_app()) as client:
        client.post("/api/products", json={"name": "Tray", "price": 3})

    assert (tmp_path / "shop.db").is_file()


def test_openapi_describes_the_service(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    assert document["info"]["title"] == "Conveyor Shop"
    assert document["info"]["version"] == "1.2.3"
    assert set(document["paths"]) == {
        "/api/products",
        "/api/products/{product_id}",
        "/api/checkout",
        "/api/orders",
        "/healthz",
        "/version",
    }


def test_home_page_lists_products(client: TestClient) -> None:
    client.post("/api/products", json={"name": "Teapot", "price": 12.5})

    response = client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>Conveyor Shop</title>" in response.text
    assert 'id="products"' in response.text
    assert "Teapot" in response.text
    assert "12.50" in response.text


def test_home_page_escapes_product_names(client: TestClient) -> None:
    client.post("/api/products", json={"name": "<script>alert(1)</script>", "price": 1})

    page = client.get("/").text

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_home_page_says_when_the_catalogue_is_empty(client: TestClient) -> None:
    assert "No products yet." in client.get("/").text
