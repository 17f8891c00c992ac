"""Injected faults: errors and latency on /api requests, from settings or environment."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from app.faults import FaultMiddleware
from app.main import create_app

Reader = Callable[[TestClient, str, dict[str, str]], float | None]


def test_fault_rate_one_fails_every_api_request(make_client: Callable[..., TestClient]) -> None:
    client = make_client(fault_rate=1.0)

    listed = client.get("/api/products")
    created = client.post("/api/products", json={"name": "Cup", "price": 2})

    assert listed.status_code == 500
    assert listed.json() == {"detail": "injected fault"}
    assert created.status_code == 500


def test_faults_spare_health_page_and_metrics(make_client: Callable[..., TestClient]) -> None:
    client = make_client(fault_rate=1.0)

    assert client.get("/healthz").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_injected_faults_are_counted_under_their_route(
    make_client: Callable[..., TestClient], read_metric: Reader
) -> None:
    client = make_client(fault_rate=1.0)
    client.get("/api/products/7")

    labels = {"method": "GET", "route": "/api/products/{product_id}", "status": "500"}
    assert read_metric(client, "shop_http_requests_total", labels) == 1


def test_fault_rate_is_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_FAULT_RATE", "1")

    with TestClient(create_app(str(tmp_path / "shop.db"))) as client:
        assert client.get("/api/products").status_code == 500


def test_no_faults_by_default(client: TestClient) -> None:
    statuses = {client.get("/api/products").status_code for _ in range(20)}

    assert statuses == {200}


def test_extra_latency_delays_api_requests_only() -> None:
    delays: list[float] = []

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/api/products", ok), Route("/healthz", ok)],
        middleware=[
            Middleware(FaultMiddleware, fault_rate=0.0, extra_latency_ms=250, sleep=record_sleep)
        ],
    )
    with TestClient(app) as client:
        client.get("/healthz")
        assert delays == []
        assert client.get("/api/products").text == "ok"
        assert delays == [0.25]


def test_partial_fault_rate_fails_the_drawn_fraction() -> None:
    draws = iter([0.1, 0.9, 0.29, 0.3])

    class Drawn(random.Random):
        def random(self) -> float:
            return next(draws)

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/api/products", ok)],
        middleware=[Middleware(FaultMiddleware, fault_rate=0.3, extra_latency_ms=0, rng=Drawn())],
    )
    with TestClient(app) as client:
        statuses = [client.get("/api/products").status_code for _ in range(4)]

    assert statuses == [500, 200, 500, 200]
