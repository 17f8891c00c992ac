"""Traffic through an environment's router while it changes: who answered, what failed."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from conftest import wait_until

REQUESTS_PER_SECOND = 150
CLIENTS = 6


@dataclass(frozen=True)
class Answer:
    sent_at: float  # monotonic, when the request left
    version: str | None  # X-App-Version, None for a failure
    failure: str | None  # a connection error or a status >= 500


@dataclass
class Load:
    """GET / at about `rate` requests per second from `clients` threads, each over one
    keep-alive connection (one connection alone manages ~45/s: the app replies in two
    small writes and Nagle holds the second).

    Cookies are dropped after each answer: a sticky cookie would keep the client on one
    release and hide what the router does with new clients."""

    url: str
    rate: float = REQUESTS_PER_SECOND
    clients: int = CLIENTS
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for index in range(self.clients):
            thread = threading.Thread(target=self._run, name=f"load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        wait_until(lambda: self.answers, "the first answer through the router")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> list[Answer]:
        """Stop sending (idempotent); every answer received."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return list(self.answers)

    def failures(self) -> list[str]:
        return [a.failure for a in list(self.answers) if a.failure is not None]

    def versions_since(self, moment: float) -> set[str | None]:
        return {a.version for a in list(self.answers) if a.sent_at > moment}

    def served_by(self, version: str) -> int:
        return sum(1 for a in list(self.answers) if a.version == version)

    def _run(self) -> None:
        interval = self.clients / self.rate
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self._stop.is_set():
                sent_at = time.monotonic()
                self.answers.append(_one_request(client, sent_at))  # list.append is atomic
                client.cookies.clear()
                self._stop.wait(max(0.0, interval - (time.monotonic() - sent_at)))


def _one_request(client: httpx.Client, sent_at: float) -> Answer:
    try:
        response = client.get("/")
    except httpx.HTTPError as error:
        return Answer(sent_at, None, f"{type(error).__name__}: {error}")
    if response.status_code >= 500:
        return Answer(sent_at, None, f"{response.status_code}: {response.text.strip()}")
    return Answer(sent_at, response.headers.get("X-App-Version"), None)
