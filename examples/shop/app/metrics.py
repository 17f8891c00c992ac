"""Prometheus metrics: a private registry per app and the middleware that fills it."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED_ROUTE = "<unmatched>"


class Metrics:
    """The service's metrics, in a registry of their own so many apps can coexist."""

    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "shop_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shop_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["route"],
            registry=self.registry,
        )
        build = Gauge(
            "shop_build_info",
            "Always 1; the label tells which version answers.",
            ["version"],
            registry=self.registry,
        )
        build.labels(version=version).set(1)
        # Business counters, labelled by the flag experiment and the variant that served
        # the user (Conveyor reads them per release and per variant: docs/monitoring.md).
        self.checkouts = Counter(
            "shop_checkouts_started",
            "Checkouts started, by flag and the variant that served the user.",
            ["flag", "variant"],
            registry=self.registry,
        )
        self.orders = Counter(
            "shop_orders",
            "Orders placed, by flag and the variant that served the user's checkout.",
            ["flag", "variant"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def checkout_started(self, flag: str, variant: str) -> None:
        self.checkouts.labels(flag=flag, variant=variant).inc()

    def order_placed(self, flag: str, variant: str) -> None:
        self.orders.labels(flag=flag, variant=variant).inc()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format the scraper asks for (text or OpenMetrics)."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (`/api/products/{id}`).

    The template is looked up here rather than read from the scope after routing, so
    requests answered before routing (injected faults) are still labelled by route.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_capturing_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_capturing_status)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe(scope["method"], self._route_template(scope), status, elapsed)

    def _route_template(self, scope: Scope) -> str:
        partial: str | None = None
        for route in self.routes:
            match, _ = route.matches(scope)
            path = getattr(route, "path", None)
            if not isinstance(path, str):
                continue
            if match is Match.FULL:
                return path
            if match is Match.PARTIAL and partial is None:
                partial = path  # right path, wrong method: answered 405
        return partial or UNMATCHED_ROUTE
