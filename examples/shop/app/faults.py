"""Deliberate faults for the release demo: errors and latency on /api requests."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

FAULTY_PREFIX = "/api/"


class FaultMiddleware:
    """Delays /api requests and answers a fraction of them with 500, as configured."""

    def __init__(
        self,
        app: ASGIApp,
        fault_rate: float,
        extra_latency_ms: float,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.app = app
        self.fault_rate = fault_rate
        self.extra_latency_s = extra_latency_ms / 1000
        self.rng = rng or random.Random()
        self.sleep = sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(FAULTY_PREFIX):
            await self.app(scope, receive, send)
            return
        if self.extra_latency_s > 0:
            await self.sleep(self.extra_latency_s)
        if self.fault_rate > 0 and self.rng.random() < self.fault_rate:
            response = JSONResponse({"detail": "injected fault"}, status_code=500)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
