"""Search finds products by part of their name, and treats the term as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.db import ProductStore
from app.models import ProductIn
from app.search import payments_api_key, search_products


def _store(tmp_path: Path) -> str:
    path = str(tmp_path / "shop.db")
    store = ProductStore(path)
    store.create_schema()
    store.add(ProductIn(name="Blue mug", price=8.5))
    store.add(ProductIn(name="Red mug", price=9.0))
    store.add(ProductIn(name="Teapot", price=25.0))
    return path


def test_finds_products_by_part_of_their_name(tmp_path: Path) -> None:
    found = search_products(_store(tmp_path), "mug")
    assert sorted(p.name for p in found) == ["Blue mug", "Red mug"]


def test_a_quote_in_the_term_is_data_not_sql(tmp_path: Path) -> None:
    assert search_products(_store(tmp_path), "' OR '1'='1") == []


def test_the_payments_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_PAYMENTS_API_KEY", "from-env")
    assert payments_api_key() == "from-env"
