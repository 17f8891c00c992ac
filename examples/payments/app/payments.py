"""What a payment request must hold, and the answer: the API the shop relies on.

The shop reads `payment_id` and `status` of the answer (its pact says so, and Conveyor
holds every release of this service to it)."""

from __future__ import annotations

import uuid
from typing import Any

CURRENCIES = frozenset({"EUR", "USD", "GBP"})
MAX_ORDER_ID = 64


class PaymentError(ValueError):
    """The request cannot be a payment: the answer is 400 with this message."""


def take_payment(request: Any) -> dict[str, Any]:
    """Accept a payment for an order; the answer's body (201)."""
    if not isinstance(request, dict):
        raise PaymentError("the body must be a JSON object")
    order_id = request.get("order_id")
    if not isinstance(order_id, str) or not 0 < len(order_id) <= MAX_ORDER_ID:
        raise PaymentError("order_id: a string of 1 to 64 characters")
    currency = request.get("currency", "EUR")
    if currency not in CURRENCIES:
        raise PaymentError(f"currency: one of {', '.join(sorted(CURRENCIES))}")
    return {
        "payment_id": f"pay_{uuid.uuid4().hex[:16]}",
        "order_id": order_id,
        "status": "accepted",
    }
