"""Fixtures for in-process tests: a fresh app on a temporary database per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.main import create_app

ClientFactory = Callable[..., TestClient]
MetricReader = Callable[[TestClient, str, dict[str, str]], float | None]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[ClientFactory]:
    """Build clients on apps with the given settings; all closed at teardown."""
    base = Settings(db_path=str(tmp_path / "shop.db"), version="1.2.3")
    with ExitStack() as stack:

        def build(**overrides: Any) -> TestClient:
            app = create_app(settings=replace(base, **overrides))
            return stack.enter_context(TestClient(app))

        yield build


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture
def read_metric() -> MetricReader:
    """The value of one sample scraped from /metrics, or None when it is absent."""

    def read(client: TestClient, sample_name: str, labels: dict[str, str]) -> float | None:
        text = client.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == sample_name and sample.labels == labels:
                    return float(sample.value)
        return None

    return read
