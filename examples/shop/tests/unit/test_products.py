"""The products API: create, list, get, delete, validation and 404s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient


def test_the_catalogue_starts_empty(client: TestClient) -> None:
    response = client.get("/api/products")

    assert response.status_code == 200
    assert response.json() == []


def test_create_answers_201_with_the_product_and_its_location(client: TestClient) -> None:
    response = client.post("/api/products", json={"name": "  Teapot ", "price": 12.5})

    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "name": "Teapot", "price": 12.5, "description": ""}
    assert response.headers["location"] == f"/api/products/{body['id']}"
    assert client.get(response.headers["location"]).json() == body


def test_list_returns_products_in_creation_order(client: TestClient) -> None:
    for name in ("Cup", "Saucer", "Spoon"):
        client.post("/api/products", json={"name": name, "price": 1})

    names = [p["name"] for p in client.get("/api/products").json()]

    assert names == ["Cup", "Saucer", "Spoon"]


def test_get_unknown_product_is_a_404_json_error(client: TestClient) -> None:
    response = client.get("/api/products/999")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "product 999 not found"}


def test_delete_removes_the_product(client: TestClient) -> None:
    created = client.post("/api/products", json={"name": "Mug", "price": 4}).json()

    deleted = client.delete(f"/api/products/{created['id']}")

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.get(f"/api/products/{created['id']}").status_code == 404
    assert client.get("/api/products").json() == []


def test_delete_unknown_product_is_a_404(client: TestClient) -> None:
    response = client.delete("/api/products/42")

    assert response.status_code == 404
    assert response.json() == {"detail": "product 42 not found"}


@pytest.mark.parametrize(
    ("payload", "bad_field"),
    [
        ({"name": "", "price": 1}, "name"),
        ({"name": "   ", "price": 1}, "name"),
        ({"name": "x" * 101, "price": 1}, "name"),
        ({"name": "Cup", "price": 0}, "price"),
        ({"name": "Cup", "price": -3}, "price"),
        ({"name": "Cup", "price": "cheap"}, "price"),
        ({"name": "Cup"}, "price"),
        ({"price": 2}, "name"),
        ({"name": "Cup", "price": 2, "colour": "red"}, "colour"),
    ],
)
def test_invalid_products_are_rejected_with_422(
    client: TestClient, payload: dict[str, Any], bad_field: str
) -> None:
    response = client.post("/api/products", json=payload)

    assert response.status_code == 422
    assert [error["loc"][-1] for error in response.json()["detail"]] == [bad_field]
    assert client.get("/api/products").json() == []


@pytest.mark.parametrize("product_id", ["abc", "0", "-1"])
def test_ids_must_be_positive_integers(client: TestClient, product_id: str) -> None:
    assert client.get(f"/api/products/{product_id}").status_code == 422


def test_products_persist_in_the_database_across_app_instances(
    make_client: Callable[..., TestClient],
) -> None:
    make_client().post("/api/products", json={"name": "Kettle", "price": 30})

    names = [p["name"] for p in make_client().get("/api/products").json()]

    assert names == ["Kettle"]


def test_names_are_stored_verbatim_not_interpreted_as_sql(client: TestClient) -> None:
    name = "Robert'); DROP TABLE products;--"

    created = client.post("/api/products", json={"name": name, "price": 1}).json()

    assert client.get(f"/api/products/{created['id']}").json()["name"] == name
