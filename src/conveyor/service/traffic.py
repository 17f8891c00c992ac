"""Synthetic users: steady traffic on a service, so a canary has requests to be judged on.

The demo runs them against production while later changes roll out; tests and
benchmarks have load generators of their own. Every few steps a user also starts the
shop's checkout (`POST /api/checkout`) and places the order with a probability that
depends on the checkout's variant (`COMPLETION`): a model of people who finish a
one-page checkout more often than a two-step one, so the business metrics, the
conversion guardrail and the checkout experiment have something to show. Now and then
(`feedback_every` seconds over all users, within the router's default rate limit for one
address) a user who checked out rates the shop through the router's feedback endpoint,
more kindly after the one-page checkout (`RATINGS`). A service without those endpoints
just answers 404 to them.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

PATHS = ("/api/products", "/", "/api/products", "/healthz")
CHECKOUT_EVERY = 5  # steps between a user's checkouts
# The chance a started checkout ends in an order, by the variant that served it.
COMPLETION = {"on": 0.6, "off": 0.45}
FEEDBACK_PATH = "/.conveyor/feedback"
# What a user who checked out says, by variant: a rating and a text, picked at random.
RATINGS = {
    "on": ((5, "quick checkout, one page"), (4, "easy checkout"), (5, "fast and simple")),
    "off": ((3, "checkout has too many steps"), (4, "fine"), (2, "the review step is slow")),
}


@dataclass
class SyntheticUsers:
    """`users` threads, each a user browsing `url` about `per_user` times a second."""

    url: str
    users: int = 4
    per_user: float = 10.0
    feedback_every: float = 12.5  # seconds between two ratings, over all users
    statuses: Counter[int] = field(default_factory=Counter)
    _next_feedback: float = 0.0
    _feedback_lock: threading.Lock = field(default_factory=threading.Lock)
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
        chance = random.Random(index)  # each user decides the same way in every demo
        with httpx.Client(base_url=self.url, timeout=5.0, trust_env=False) as client:
            while not self._stop.wait(pause):
                if not self._browsing.wait(pause):
                    continue
                step += 1
                try:
                    if step % CHECKOUT_EVERY == 0:
                        self._check_out(client, chance)
                    else:
                        self._count(client.get(PATHS[step % len(PATHS)]))
                except httpx.HTTPError:
                    self.statuses[0] += 1  # no answer
                    continue
                client.cookies.clear()  # a new visitor each time: no sticky release

    def _check_out(self, client: httpx.Client, chance: random.Random) -> None:
        started = self._count(client.post("/api/checkout", json={"product_id": 1}))
        if started.status_code != 201:
            return
        body = started.json()
        variant = str(body.get("variant"))
        if chance.random() < COMPLETION.get(variant, 0.0):
            self._count(client.post("/api/orders", json={"checkout": body.get("checkout")}))
        if variant in RATINGS and self._feedback_due():
            rating, text = chance.choice(RATINGS[variant])
            post = {"rating": rating, "text": text, "variants": {"one-page-checkout": variant}}
            client.post(FEEDBACK_PATH, json=post, headers={"Origin": self.url.rstrip("/")})

    def _feedback_due(self) -> bool:
        now = time.monotonic()
        with self._feedback_lock:
            if now < self._next_feedback:
                return False
            self._next_feedback = now + self.feedback_every
            return True

    def _count(self, answer: httpx.Response) -> httpx.Response:
        self.statuses[answer.status_code] += 1
        return answer
