"""Time as the controllers see it: a monotonic reading and a sleep.

Everything that waits in a rollout (an analysis interval, a drain, a readiness poll)
goes through a `Clock`, so tests can run a whole canary on a clock that only moves when
something sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class SleptClock:
    """A clock that reads the time slept through it: one interval per sleep, however long
    the sleep really took (or whether `sleep` really sleeps)."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep
        self._slept = 0.0

    def monotonic(self) -> float:
        return self._slept

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)
        self._slept += seconds
