"""Traffic through an environment's router while an alert rolls it back, shared by the
end-to-end alert tests."""

from __future__ import annotations

import contextlib
import threading
import time

import httpx

from server.conftest import ServerUnderTest


class Traffic:
    """GET / through the router every 20 ms; keeps the last body."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.last = ""
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self.stopped.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    self.last = client.get(self.url).text
                time.sleep(0.02)


def live_release(served: ServerUnderTest, environment: str = "staging") -> str | None:
    record = served.context.store.ledger.environments.get(environment)
    return record.live_release if record else None
