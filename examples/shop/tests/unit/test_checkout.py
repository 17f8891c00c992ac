"""The checkout and its flag experiment: starts and orders counted per variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import MetricReader
from fastapi.testclient import TestClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from app.checkout import ONE_PAGE_CHECKOUT
from app.config import Settings
from app.flags import FlagClient
from app.main import create_app


def one_page_for(users: set[str]) -> InMemoryProvider:
    """The experiment on for these users only."""

    def decide(flag: InMemoryFlag[Any], context: EvaluationContext) -> FlagResolutionDetails[Any]:
        on = context.attributes.get("userId") in users
        return FlagResolutionDetails(
            on, reason=Reason.TARGETING_MATCH, variant="on" if on else "off"
        )

    flag = InMemoryFlag("off", {"on": True, "off": False}, context_evaluator=decide)
    return InMemoryProvider({ONE_PAGE_CHECKOUT: flag})


def counted(read: MetricReader, client: TestClient, name: str, variant: str) -> float | None:
    return read(client, name, {"flag": ONE_PAGE_CHECKOUT, "variant": variant})


def test_orders_count_under_the_variant_that_served_their_checkout(
    tmp_path: Path, read_metric: MetricReader
) -> None:
    settings = Settings(db_path=str(tmp_path / "shop.db"), version="1.2.3")
    flags = FlagClient(one_page_for({"ada"}), "staging")
    with TestClient(create_app(settings=settings, flags=flags)) as client:
        ada = client.post("/api/checkout", json={"product_id": 1}, headers={"X-User-Id": "ada"})
        bob = client.post("/api/checkout", json={"product_id": 1}, headers={"X-User-Id": "bob"})
        client.post("/api/checkout", json={"product_id": 2}, headers={"X-User-Id": "bob"})
        order = client.post("/api/orders", json={"checkout": ada.json()["checkout"]})

        assert ada.status_code == 201 and ada.json()["variant"] == "on"
        assert ada.json()["steps"] == 1 and bob.json()["steps"] == 2
        assert order.status_code == 201 and order.json()["variant"] == "on"
        assert counted(read_metric, client, "shop_checkouts_started_total", "on") == 1
        assert counted(read_metric, client, "shop_checkouts_started_total", "off") == 2
        assert counted(read_metric, client, "shop_orders_total", "on") == 1
        assert counted(read_metric, client, "shop_orders_total", "off") is None


def test_the_checkout_page_has_two_steps_without_the_flag(
    client: TestClient, read_metric: MetricReader
) -> None:
    page = client.get("/checkout")

    assert page.status_code == 200
    assert 'id="continue"' in page.text and 'data-steps="2"' in page.text
    assert page.cookies.get("shop-user")
    assert counted(read_metric, client, "shop_checkouts_started_total", "off") == 1


def test_an_order_needs_a_checkout_id(client: TestClient, read_metric: MetricReader) -> None:
    for body in ({}, {"checkout": "on.not-hex"}, {"checkout": "maybe." + "0" * 32}):
        assert client.post("/api/orders", json=body).status_code == 422
    assert counted(read_metric, client, "shop_orders_total", "on") is None
