"""The shop's contract with payments, recorded as a pact (consumer-driven contracts).

pact-python's mock server stands in for payments; the shop's own client (app/payments.py)
makes its real call against it, and the interaction becomes the pact file
`shop-payments.json` in $PACT_DIR (Conveyor's `contract` step sets it, and records the
file for this commit; payments' pipeline then verifies it). Matchers say what the shop
relies on: a `payment_id` and a `status` that are strings, whatever their values.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pact import Pact, match

from app.payments import PaymentsClient

os.environ.setdefault("PACT_DO_NOT_TRACK", "true")  # no usage report over the network


@pytest.fixture
def pact() -> Iterator[Pact]:
    contract = Pact("shop", "payments").with_specification("V4")
    yield contract
    contract.write_file(Path(os.environ.get("PACT_DIR", "pacts")), overwrite=True)


def test_a_payment_for_an_order(pact: Pact) -> None:
    (
        pact.upon_receiving("a payment for an order")
        .with_request("POST", "/payments")
        .with_body({"order_id": "o-1", "currency": "EUR"}, content_type="application/json")
        .will_respond_with(201)
        .with_body(
            {"payment_id": match.str("pay_1"), "status": match.str("accepted")},
            content_type="application/json",
        )
    )
    with pact.serve() as server:
        client = PaymentsClient(str(server.url))
        payment = client.pay("o-1")
        client.close()
    assert payment.payment_id == "pay_1"
    assert payment.status == "accepted"
