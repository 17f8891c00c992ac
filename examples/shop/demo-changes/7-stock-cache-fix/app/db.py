"""SQLite storage for products (stdlib sqlite3, one short connection per operation)."""

from __future__ import annotations

import os
import sqlite3
import threading
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
        _WAREHOUSE.stock_levels()
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, name, price, description FROM products ORDER BY id"
            ).fetchall()
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


class WarehouseUnavailable(RuntimeError):
    """No warehouse connection could be had: the product list cannot show stock."""


class _WarehousePool:
    """Stock levels from the warehouse, over a pool of its connections, instead of the
    200 ms call on every list.

    Each list borrows a connection for the duration of its read and gives it back, even
    when the read fails (REQ-1: the version before never gave it back, and the pool ran
    dry under production's traffic). Only production has a warehouse
    (SHOP_WAREHOUSE_URL)."""

    SIZE = 750  # connections

    def __init__(self) -> None:
        self.borrowed = 0
        self.lock = threading.Lock()

    def stock_levels(self) -> None:
        if not os.environ.get("SHOP_WAREHOUSE_URL"):
            return
        with self._connection():
            pass  # the stock levels, read over the borrowed connection

    @contextmanager
    def _connection(self) -> Iterator[None]:
        with self.lock:
            if self.borrowed >= self.SIZE:
                raise WarehouseUnavailable("no free warehouse connection")
            self.borrowed += 1
        try:
            yield
        finally:
            with self.lock:
                self.borrowed -= 1


_WAREHOUSE = _WarehousePool()
