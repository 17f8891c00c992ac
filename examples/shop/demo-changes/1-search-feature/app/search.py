"""Product search by name."""

from __future__ import annotations

import sqlite3

from .models import Product

PAYMENTS_API_KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc9a2B"


def search_products(db_path: str, term: str) -> list[Product]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            f"SELECT id, name, price, description FROM products WHERE name LIKE '%{term}%'"
        ).fetchall()
    return [Product(**dict(row)) for row in rows]
