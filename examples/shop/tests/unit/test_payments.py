"""The checkout with a payments service (PAYMENTS_URL): each order paid, or refused 502."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from conftest import ClientFactory

Answer = tuple[str, dict[str, Any]]


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def payments() -> Iterator[Callable[[Answer], str]]:
    """A stand-in payments service answering what the test says; yields a setter."""
    answer: list[Answer] = [("201 Created", {"payment_id": "pay_1", "status": "accepted"})]

    def app(environ: dict[str, Any], start: Any) -> list[bytes]:
        status, body = answer[0]
        start(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def answering(new: Answer) -> str:
        answer[0] = new
        return f"http://127.0.0.1:{server.server_port}"

    yield answering
    server.shutdown()
    server.server_close()


def order(client: Any) -> Any:
    checkout = client.post("/api/checkout", json={"product_id": 1}).json()["checkout"]
    return client.post("/api/orders", json={"checkout": checkout, "address": "1 Main St"})


def test_without_payments_orders_are_taken_as_before(make_client: ClientFactory) -> None:
    placed = order(make_client())
    assert placed.status_code == 201
    assert placed.json()["payment"] is None


def test_each_order_is_paid(make_client: ClientFactory, payments: Any) -> None:
    url = payments(("201 Created", {"payment_id": "pay_1", "status": "accepted"}))
    placed = order(make_client(payments_url=url))
    assert placed.status_code == 201
    assert placed.json()["payment"] == "pay_1"


@pytest.mark.parametrize(
    "answer",
    [("400 Bad Request", {"error": "no"}), ("201 Created", {"payment_id": "pay_1"})],
    ids=["refused", "no-status"],
)
def test_an_order_payments_does_not_take_is_refused(
    make_client: ClientFactory, payments: Any, answer: Answer
) -> None:
    placed = order(make_client(payments_url=payments(answer)))
    assert placed.status_code == 502
    assert "payments" in placed.json()["detail"]


def test_payments_not_answering_refuses_the_order(make_client: ClientFactory) -> None:
    placed = order(make_client(payments_url="http://127.0.0.1:9"))
    assert placed.status_code == 502
    assert "did not answer" in placed.json()["detail"]
