"""Real user journeys through the catalogue page, in a browser, against a running shop.

Run by Conveyor's `e2e` step against staging (`pytest tests/e2e --base-url URL`, with
pytest-playwright). Each journey makes its own uniquely named products and deletes them
afterwards, so the journeys are independent of each other and of what staging holds.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import APIRequestContext, Locator, Page, expect

Product = dict[str, object]


@pytest.fixture
def catalogue(page: Page, base_url: str | None) -> Page:
    """The catalogue page, opened as a visitor would."""
    if not base_url:
        pytest.fail("give the running shop's URL: pytest tests/e2e --base-url URL")
    page.goto("/")
    expect(page.get_by_role("heading", name="Conveyor Shop")).to_be_visible()
    return page


@pytest.fixture
def cleanup(page: Page) -> Iterator[list[str]]:
    """Names of products a journey adds; deleted again afterwards."""
    names: list[str] = []
    yield names
    for product in _api_products(page.request):
        if product["name"] in names:
            page.request.delete(f"/api/products/{product['id']}")


def test_catalogue_lists_products_and_shows_version(catalogue: Page, cleanup: list[str]) -> None:
    product = _create(catalogue.request, _unique("Lamp"), 19.5, cleanup)

    catalogue.reload()

    expect(_item(catalogue, str(product["name"]))).to_have_text(f"{product['name']} — 19.50")
    version = catalogue.request.get("/version").json()["version"]
    expect(catalogue.locator("footer")).to_have_text(f"version {version}")


def test_visitor_adds_a_product_with_the_form(catalogue: Page, cleanup: list[str]) -> None:
    name = _unique("Teapot")
    cleanup.append(name)

    _submit(catalogue, name, "12.5")

    expect(_item(catalogue, name)).to_have_text(f"{name} — 12.50")
    expect(catalogue.get_by_placeholder("Name")).to_be_empty()  # the page reloaded


def test_a_blank_name_is_refused_with_the_error_shown(catalogue: Page) -> None:
    _submit(catalogue, "   ", "5")

    expect(catalogue.get_by_role("alert")).to_have_text("Could not add: 422")
    expect(catalogue.get_by_placeholder("Name")).to_have_value("   ")  # no reload


def test_a_zero_price_is_refused_until_corrected(catalogue: Page, cleanup: list[str]) -> None:
    name = _unique("Kettle")
    cleanup.append(name)

    _submit(catalogue, name, "0")

    expect(catalogue.locator("input[name=price]:invalid")).to_be_visible()
    expect(_item(catalogue, name)).to_have_count(0)

    _submit(catalogue, name, "3")

    expect(_item(catalogue, name)).to_have_count(1)  # the refused attempt added nothing
    expect(_item(catalogue, name)).to_have_text(f"{name} — 3.00")


def test_the_api_and_the_page_agree(catalogue: Page, cleanup: list[str]) -> None:
    from_api = _create(catalogue.request, _unique("Mug"), 7.25, cleanup)
    from_page = _unique("Bowl")
    cleanup.append(from_page)

    _submit(catalogue, from_page, "4")
    expect(_item(catalogue, from_page)).to_have_count(1)  # the page reloaded: it was added

    expect(catalogue.locator(f"li[data-id='{from_api['id']}']")).to_have_text(
        f"{from_api['name']} — 7.25"
    )
    added = [p for p in _api_products(catalogue.request) if p["name"] == from_page]
    assert [p["price"] for p in added] == [4.0]
    expect(catalogue.locator(f"li[data-id='{added[0]['id']}']")).to_have_text(
        re.compile(rf"^{from_page} — 4\.00$")
    )


def _unique(label: str) -> str:
    return f"E2E {label} {uuid.uuid4().hex[:8]}"


def _item(page: Page, name: str) -> Locator:
    return page.locator("#products li", has_text=name)


def _submit(page: Page, name: str, price: str) -> None:
    page.get_by_placeholder("Name").fill(name)
    page.get_by_placeholder("Price").fill(price)
    page.get_by_role("button", name="Add").click()


def _create(api: APIRequestContext, name: str, price: float, cleanup: list[str]) -> Product:
    cleanup.append(name)
    response = api.post("/api/products", data={"name": name, "price": price})
    assert response.status == 201, response.text()
    product: Product = response.json()
    return product


def _api_products(api: APIRequestContext) -> list[Product]:
    response = api.get("/api/products")
    assert response.ok, response.text()
    products: list[Product] = response.json()
    return products
