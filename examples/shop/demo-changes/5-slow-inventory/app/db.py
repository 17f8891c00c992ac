"""SQLite storage for products (stdlib sqlite3, one short connection per operation)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from .models import Product, ProductIn

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    price REAL NOT NULL CHECK (price > 0),
    description TEXT NOT NULL DEFAULT ''
)
"""


class ProductStore:
    """Products in one SQLite file; safe to share between request threads."""

    def __init__(self, path: str) -> None:
        self.path = path

    def create_schema(self) -> None:
        parent = Path(self.path).parent
        parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute(SCHEMA)

    def list_products(self) -> list[Product]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, name, price, description FROM products ORDER BY id"
            ).fetchall()
        _refresh_stock_levels()
        return [_product(row) for row in rows]

    def get(self, product_id: int) -> Product | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT id, name, price, description FROM products WHERE id = ?", (product_id,)
            ).fetchone()
        return None if row is None else _product(row)

    def add(self, product: ProductIn) -> Product:
        with self._connect() as conn:
            cursor = conn.execute(
                "INSERT INTO products (name, price, description) VALUES (?, ?, ?)",
                (product.name, product.price, product.description),
            )
            new_id = cursor.lastrowid
        if new_id is None:  # never for an INSERT into a rowid table; keeps the type honest
            raise RuntimeError("SQLite did not report the new product's id")
        return Product(id=new_id, **product.model_dump())

    def delete(self, product_id: int) -> bool:
        """Remove the product; False when there was none with that id."""
        with self._connect() as conn:
            cursor = conn.execute("DELETE FROM products WHERE id = ?", (product_id,))
        return cursor.rowcount > 0

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # `with conn` commits or rolls back; `closing` releases the file handle.
        with closing(sqlite3.connect(self.path, timeout=5.0)) as conn, conn:
            conn.row_factory = sqlite3.Row
            yield conn


def _product(row: sqlite3.Row) -> Product:
    return Product(
        id=row["id"], name=row["name"], price=row["price"], description=row["description"]
    )


def _refresh_stock_levels() -> None:
    """Ask the warehouse for fresh stock levels before listing: a synchronous call that
    takes about 200 ms, the latency regression the production canary catches. Only
    production has a warehouse (SHOP_WAREHOUSE_URL); staging skips the call, so its load
    test cannot see the regression."""
    if os.environ.get("SHOP_WAREHOUSE_URL"):
        time.sleep(0.2)
