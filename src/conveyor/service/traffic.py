"""Synthetic users: steady traffic on a service, so a canary has requests to be judged on.

The demo runs them against production while later changes roll out; tests and
benchmarks have load generators of their own.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import httpx

PATHS = ("/api/products", "/", "/api/products", "/healthz")


@dataclass
class SyntheticUsers:
    """`users` threads, each a user browsing `url` about `per_user` times a second."""

    url: str
    users: int = 4
    per_user: float = 10.0
    statuses: Counter[int] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _browsing: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, *, paused: bool = False) -> SyntheticUsers:
        if not paused:
            self._browsing.set()
        for index in range(self.users):
            thread = threading.Thread(target=self._browse, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def pause(self) -> None:
        """The users leave (no requests) until `resume`."""
        self._browsing.clear()

    def resume(self) -> None:
        self._browsing.set()

    def stop(self) -> Counter[int]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        return self.statuses

    def _browse(self, index: int) -> None:
        pause = 1.0 / self.per_user
        step = index
        with httpx.Client(base_url=self.url, timeout=5.0, trust_env=False) as client:
            while not self._stop.wait(pause):
                if not self._browsing.wait(pause):
                    continue
                step += 1
                try:
                    answer = client.get(PATHS[step % len(PATHS)])
                except httpx.HTTPError:
                    self.statuses[0] += 1  # no answer
                    continue
                self.statuses[answer.status_code] += 1
                client.cookies.clear()  # a new visitor each time: no sticky release
