"""The checkout: start it, then place the order. A flag experiment picks its form.

`one-page-checkout` on: one page with the address and the order button. Off (the
control): the classic two steps, the address first, then a review with the order button.
Each start and each order is counted per variant (metrics.py), an order under the variant
that served its checkout (the checkout's id carries it, so an order counts where its
checkout did whichever replica takes it), and Conveyor compares the variants'
conversion (orders / checkouts started).

Users are told apart by the `shop-user` cookie (set on the first checkout), or the
`X-User-Id` header of API clients: the flag's rollout is sticky per user.
"""

from __future__ import annotations

import uuid
from html import escape
from string import Template
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from .flags import FlagClient, NoFlags
from .metrics import Metrics
from .models import ErrorBody
from .payments import PaymentFailed, PaymentsClient

ONE_PAGE_CHECKOUT = "one-page-checkout"
USER_COOKIE = "shop-user"
CHECKOUT_ID = r"^(on|off)\.[0-9a-f]{32}$"
# FastAPI answers 400 (not 422) when a request body cannot be decoded at all.
UNREADABLE_BODY: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "The body is not JSON."}
}


class CheckoutIn(BaseModel):
    product_id: int = Field(ge=1, description="The product to buy.")


class Checkout(BaseModel):
    checkout: str = Field(description="Its id: the variant, a dot, a random hex id.")
    variant: str = Field(description="on: the one-page checkout; off: the classic one.")
    steps: int


class OrderIn(BaseModel):
    checkout: str = Field(pattern=CHECKOUT_ID, description="The id /api/checkout gave.")
    address: str = Field(default="", max_length=200)


class Order(BaseModel):
    order: str
    checkout: str
    variant: str
    payment: str | None = Field(default=None, description="Its payment, when payments is set.")


PAGE = Template("""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Checkout · Conveyor Shop</title>
<style>body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
.hidden { display: none; }</style></head>
<body>
  <h1>Checkout</h1>
  <form id="checkout" data-checkout="$checkout" data-variant="$variant" data-steps="$steps">
    <section id="address-step">
      <label>Address <input name="address" maxlength="200" required></label>
      $first_button
    </section>
    <section id="review-step" class="$review_class">
      <p>Review your order, then place it.</p>
      <button id="place-order" type="submit">Place order</button>
    </section>
  </form>
  <p id="result" role="status"></p>
  <script>
    const form = document.getElementById("checkout");
    const next = document.getElementById("continue");
    if (next) next.addEventListener("click", () => {
      document.getElementById("review-step").classList.remove("hidden");
      next.classList.add("hidden");
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const response = await fetch("/api/orders", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({checkout: form.dataset.checkout,
                              address: new FormData(form).get("address")}),
      });
      document.getElementById("result").textContent =
        response.ok ? "Thank you for your order." : "Could not place the order: " + response.status;
    });
  </script>
</body>
</html>
""")
PAYMENT_FAILED: dict[str, object] = {
    "model": ErrorBody,
    "description": "The payments service refused the payment or did not answer.",
}
CONTINUE = '<button id="continue" type="button">Continue</button>'


def add_checkout_routes(
    app: FastAPI,
    flags: FlagClient | NoFlags,
    metrics: Metrics,
    version: str,
    *,
    payments: PaymentsClient | None = None,
) -> None:
    def start(user: str) -> Checkout:
        context = {"appName": "shop", "version": version, "userId": user}
        one_page = flags.is_enabled(ONE_PAGE_CHECKOUT, context, default=False)
        variant = "on" if one_page else "off"
        metrics.checkout_started(ONE_PAGE_CHECKOUT, variant)
        return Checkout(
            checkout=f"{variant}.{uuid.uuid4().hex}", variant=variant, steps=1 if one_page else 2
        )

    @app.get("/checkout", response_class=HTMLResponse, include_in_schema=False)
    def checkout_page(request: Request) -> HTMLResponse:
        user = _user(request, None)
        started = start(user)
        one_page = started.steps == 1
        page = PAGE.substitute(
            checkout=escape(started.checkout),
            variant=escape(started.variant),
            steps=started.steps,
            first_button="" if one_page else CONTINUE,
            review_class="" if one_page else "hidden",
        )
        answer = HTMLResponse(page)
        answer.set_cookie(USER_COOKIE, user, httponly=True, samesite="lax")
        return answer

    @app.post(
        "/api/checkout",
        tags=["checkout"],
        status_code=status.HTTP_201_CREATED,
        responses=UNREADABLE_BODY,
    )
    def start_checkout(
        body: CheckoutIn,
        request: Request,
        x_user_id: Annotated[str | None, Header(max_length=100)] = None,
    ) -> Checkout:
        return start(_user(request, x_user_id))

    @app.post(
        "/api/orders",
        tags=["checkout"],
        status_code=status.HTTP_201_CREATED,
        responses={**UNREADABLE_BODY, 502: PAYMENT_FAILED},
    )
    def place_order(body: OrderIn) -> Order:
        variant = body.checkout.split(".", 1)[0]
        order = uuid.uuid4().hex
        payment = None
        if payments is not None:
            try:
                payment = payments.pay(order).payment_id
            except PaymentFailed as error:
                raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(error)) from None
        metrics.order_placed(ONE_PAGE_CHECKOUT, variant)
        return Order(order=order, checkout=body.checkout, variant=variant, payment=payment)


def _user(request: Request, header: str | None) -> str:
    """The user's id: the API header, else the cookie, else a new one."""
    chosen = header or request.cookies.get(USER_COOKIE, "")
    return chosen[:100] if chosen else uuid.uuid4().hex
