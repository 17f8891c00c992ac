"""The shop's load profile for Conveyor's `perf` step (Locust).

A visitor mostly reads: the catalogue page, the product list and single products; now and
then an editor adds a product and takes it down again, so staging's catalogue keeps its
size from run to run and the timings of one release compare with the last. Requests for
one product are named `/api/products/[id]`: they aggregate into one row whatever the id.

Run it by hand with `locust -f perf/locustfile.py --host http://127.0.0.1:8000`.
"""

from __future__ import annotations

import random
from http import HTTPStatus
from itertools import count

from locust import HttpUser, between, task

PRODUCT = "/api/products/[id]"
TEMPORARY = "Load-test teapot"  # products the editor adds and removes again
_serial = count(1)


class Visitor(HttpUser):
    # Think time between a visitor's clicks.
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.product_ids: list[int] = []
        self.list_products()
        if not self.product_ids:  # a fresh staging: give the visitors something to view
            seeded = self._add("Teapot")
            self.product_ids = [] if seeded is None else [seeded]

    @task(3)
    def browse_catalogue(self) -> None:
        self.client.get("/", name="/")

    @task(4)
    def list_products(self) -> None:
        with self.client.get("/api/products", name="/api/products", catch_response=True) as got:
            if got.status_code != HTTPStatus.OK:
                got.failure(f"listing answered {got.status_code}")
                return
            # Another editor's temporary product may be gone by the time it is viewed.
            self.product_ids = [
                product["id"] for product in got.json() if not product["name"].startswith(TEMPORARY)
            ]

    @task(6)
    def view_product(self) -> None:
        if self.product_ids:
            self.client.get(f"/api/products/{random.choice(self.product_ids)}", name=PRODUCT)

    @task(1)
    def add_product(self) -> None:
        product_id = self._add(f"{TEMPORARY} {next(_serial)}")
        if product_id is not None:
            self.client.delete(f"/api/products/{product_id}", name=PRODUCT)

    def _add(self, name: str) -> int | None:
        body = {"name": name, "price": round(random.uniform(1, 99), 2)}
        with self.client.post(
            "/api/products", json=body, name="/api/products", catch_response=True
        ) as added:
            if added.status_code != HTTPStatus.CREATED:
                added.failure(f"adding a product answered {added.status_code}")
                return None
            product_id: int = added.json()["id"]
            return product_id
