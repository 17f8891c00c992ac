"""The payments service's client: the one call the checkout makes when PAYMENTS_URL is set.

What it sends and what it reads of the answer is the shop's contract with payments:
tests/contract records it as a pact (pact-python), and Conveyor holds payments' releases
to it. Reading only `payment_id` and `status` keeps the contract as small as the need.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

TIMEOUT_S = 2.0


class PaymentFailed(Exception):
    """Payments refused, did not answer, or answered something the shop cannot read."""


@dataclass(frozen=True)
class Payment:
    payment_id: str
    status: str


class PaymentsClient:
    def __init__(self, base_url: str, *, timeout: float = TIMEOUT_S) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def pay(self, order_id: str, currency: str = "EUR") -> Payment:
        try:
            answer = self._http.post("/payments", json={"order_id": order_id, "currency": currency})
            body = answer.json() if answer.status_code == httpx.codes.CREATED else None
        except (httpx.HTTPError, ValueError) as error:
            raise PaymentFailed(f"payments did not answer: {error}") from None
        if not isinstance(body, dict):
            raise PaymentFailed(f"payments answered {answer.status_code}")
        payment_id, status = body.get("payment_id"), body.get("status")
        if not isinstance(payment_id, str) or not isinstance(status, str):
            raise PaymentFailed("payments answered without payment_id and status")
        return Payment(payment_id, status)

    def close(self) -> None:
        self._http.close()


def payments_client(url: str) -> PaymentsClient | None:
    """None when no payments service is configured: orders are taken as before."""
    return PaymentsClient(url) if url else None
