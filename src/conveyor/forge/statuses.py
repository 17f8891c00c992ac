"""Sending a commit status: the forge's documented request, retried with capped
exponential backoff on a network error or a 5xx/429 answer; a 4xx is the forge saying
no (a wrong token, an unknown commit), so it is not retried."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from conveyor.forge.model import CommitStatus, Forge

ATTEMPTS = 4
FIRST_DELAY = 0.5  # seconds; doubled after each failure
MAX_DELAY = 8.0
TIMEOUT = 10.0


@dataclass(frozen=True)
class Backoff:
    attempts: int = ATTEMPTS
    first_delay: float = FIRST_DELAY
    max_delay: float = MAX_DELAY

    def delays(self) -> list[float]:
        """The waits between attempts: 0.5, 1, 2... capped."""
        return [
            min(self.first_delay * 2**n, self.max_delay) for n in range(max(self.attempts - 1, 0))
        ]


@dataclass(frozen=True)
class StatusOutcome:
    sent: bool
    attempts: int
    http_status: int | None  # the last answer, None when none came
    reason: str  # "sent", or why it was given up


Sleep = Callable[[float], Awaitable[None]]


async def post_status(
    client: httpx.AsyncClient,
    forge: Forge,
    api_url: str,
    token: str,
    status: CommitStatus,
    *,
    backoff: Backoff = Backoff(),
    sleep: Sleep = asyncio.sleep,
) -> StatusOutcome:
    request = forge.status_request(api_url, token, status)
    delays = [*backoff.delays(), None]
    answer: int | None = None
    reason = ""
    for attempt, delay in enumerate(delays, start=1):
        try:
            response = await client.request(
                request.method,
                request.url,
                headers=request.headers,
                json=request.json,
                timeout=TIMEOUT,
            )
        except httpx.HTTPError as error:
            answer, reason = None, f"{type(error).__name__}: {error}"
        else:
            answer = response.status_code
            if response.is_success:
                return StatusOutcome(True, attempt, answer, "sent")
            reason = f"HTTP {answer}"
            if answer < 500 and answer != 429:
                return StatusOutcome(False, attempt, answer, f"refused: {reason}")
        if delay is not None:
            await sleep(delay)
    return StatusOutcome(False, len(delays), answer, f"gave up after {len(delays)} tries: {reason}")
