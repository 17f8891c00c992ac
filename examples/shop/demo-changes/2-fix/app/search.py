"""Product search by name."""

from __future__ import annotations

import os
import sqlite3

from .models import Product


def payments_api_key() -> str:
    """The payment provider's key, given to the service in its environment."""
    return os.environ.get("SHOP_PAYMENTS_API_KEY", "")


def search_products(db_path: str, term: str) -> list[Product]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT id, name, price, description FROM products WHERE name LIKE ?",
            (f"%{term}%",),
        ).fetchall()
    return [Product(**dict(row)) for row in rows]
