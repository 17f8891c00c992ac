"""The builtin router's feedback intake: `POST /.conveyor/feedback` on the public port.

A service's pages post a rating (1-5) and a short text to their own origin; the router
answers it itself (the request never reaches a release) and stamps it with the release
that serves this user, decided exactly as it routes (a version pin, an A/B rule, the
sticky cookie). The flag variants the page was served come with the post and are checked
against the environment's flag definitions when Conveyor ingests them
(observe/feedback.py).

Hostile input is bounded here: the body's size and the text's length (413), the rating
and the fields (400), the origin (403: only the environment's own origin, or those
configured), the rate per client address (429) and over all addresses (503). Nothing that
identifies the user is kept: no address, no cookie set; the rate limiter holds addresses
in memory only, for as long as their bucket is not full again.

Accepted posts are appended to `feedback.jsonl` in the router's folder (rotated to
`feedback.jsonl.1` at `spool_bytes`), which Conveyor ingests into its store: the router
keeps taking feedback when no Conveyor process runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import unicodedata
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FEEDBACK_PATH = "/.conveyor/feedback"
SPOOL_FILE = "feedback.jsonl"
MIN_RATING, MAX_RATING = 1, 5
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
MAX_VARIANTS = 16
FIELDS = frozenset({"rating", "text", "variants"})


@dataclass(frozen=True)
class FeedbackLimits:
    max_body: int = 4096  # bytes of JSON
    max_text: int = 1000  # characters, after dropping control characters
    per_address: int = 5  # posts one address may burst ...
    per_address_seconds: float = 60.0  # ... refilled evenly over this many seconds
    overall_per_second: float = 20.0  # posts per second over all addresses (burst: 2 s)
    tracked_addresses: int = 10_000  # rate-limit buckets held at once
    spool_bytes: int = 4 * 1024 * 1024  # spool size at which it rotates
    origins: tuple[str, ...] = ()  # allowed besides the environment's own origin

    def arguments(self) -> list[str]:
        return [
            f"--feedback-max-body={self.max_body}",
            f"--feedback-max-text={self.max_text}",
            f"--feedback-per-address={self.per_address}",
            f"--feedback-per-address-seconds={self.per_address_seconds}",
            f"--feedback-overall-per-second={self.overall_per_second}",
            *(f"--feedback-origin={origin}" for origin in self.origins),
        ]

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        defaults = FeedbackLimits()
        parser.add_argument("--feedback-max-body", type=int, default=defaults.max_body)
        parser.add_argument("--feedback-max-text", type=int, default=defaults.max_text)
        parser.add_argument("--feedback-per-address", type=int, default=defaults.per_address)
        parser.add_argument(
            "--feedback-per-address-seconds", type=float, default=defaults.per_address_seconds
        )
        parser.add_argument(
            "--feedback-overall-per-second", type=float, default=defaults.overall_per_second
        )
        parser.add_argument("--feedback-origin", action="append", default=[])

    @staticmethod
    def from_options(options: argparse.Namespace) -> FeedbackLimits:
        return FeedbackLimits(
            max_body=options.feedback_max_body,
            max_text=options.feedback_max_text,
            per_address=options.feedback_per_address,
            per_address_seconds=options.feedback_per_address_seconds,
            overall_per_second=options.feedback_overall_per_second,
            origins=tuple(options.feedback_origin),
        )


class Rejected(Exception):
    """A post refused, with its HTTP status and the reason the client reads."""

    def __init__(self, status: int, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class Bucket:
    tokens: float
    updated: float


@dataclass
class TokenBuckets:
    """Token buckets per key, at most `capacity` keys: a full bucket is dropped (it says
    nothing a new one would not), and when every bucket is draining the oldest goes."""

    burst: float
    per_second: float
    capacity: int
    buckets: OrderedDict[str, Bucket] = field(default_factory=OrderedDict)

    def take(self, key: str, now: float) -> float | None:
        """None when a token was taken; else the seconds until one is back."""
        bucket = self.buckets.pop(key, None) or Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.per_second)
        bucket.updated = now
        wait = None
        if bucket.tokens >= 1:
            bucket.tokens -= 1
        else:
            wait = (1 - bucket.tokens) / self.per_second
        self.buckets[key] = bucket  # most recently used last
        self._prune(now)
        return wait

    def _prune(self, now: float) -> None:
        if len(self.buckets) <= self.capacity:
            return
        for key, bucket in list(self.buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.per_second >= self.burst:
                del self.buckets[key]
        while len(self.buckets) > self.capacity:
            self.buckets.popitem(last=False)


def clean_text(text: str) -> str:
    """NFC, without control characters (newlines and tabs become spaces), trimmed."""
    text = unicodedata.normalize("NFC", text)
    kept = (" " if ch in "\n\r\t" else ch for ch in text)
    return "".join(ch for ch in kept if unicodedata.category(ch)[0] != "C").strip()


def parse_post(body: bytes, limits: FeedbackLimits) -> dict[str, Any]:
    """The post's rating, text and variants, or Rejected (400 or 413)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise Rejected(400, f"the body is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise Rejected(400, "the body must be a JSON object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise Rejected(400, f"unknown fields: {', '.join(unknown)[:200]}")
    rating = data.get("rating")
    if type(rating) is not int or not MIN_RATING <= rating <= MAX_RATING:
        raise Rejected(400, f"rating must be an integer from {MIN_RATING} to {MAX_RATING}")
    text = data.get("text", "")
    if not isinstance(text, str):
        raise Rejected(400, "text must be a string")
    text = clean_text(text)
    if len(text) > limits.max_text:
        raise Rejected(413, f"text longer than {limits.max_text} characters")
    return {"rating": rating, "text": text, "variants": parse_variants(data.get("variants"))}


def parse_variants(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_VARIANTS:
        raise Rejected(400, f"variants must be an object of at most {MAX_VARIANTS} flags")
    for flag, variant in raw.items():
        if not NAME.fullmatch(flag) or not isinstance(variant, str) or not NAME.fullmatch(variant):
            raise Rejected(400, "variants must map flag names to variant names")
    return dict(sorted(raw.items()))


def origin_allowed(origin: str, host: str | None, allowed: tuple[str, ...]) -> bool:
    """The page's own origin (its host is the one this request was sent to), or one
    configured. Browsers set both headers; a script cannot forge either."""
    if origin in allowed:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and host is not None and parts.netloc == host


class FeedbackIntake:
    """Checks, rate-limits and spools posts; the proxy does the HTTP."""

    def __init__(self, folder: Path, limits: FeedbackLimits | None = None) -> None:
        self.limits = limits = limits or FeedbackLimits()
        self.spool = folder / SPOOL_FILE
        self.per_address = TokenBuckets(
            burst=limits.per_address,
            per_second=limits.per_address / limits.per_address_seconds,
            capacity=limits.tracked_addresses,
        )
        self.overall = TokenBuckets(
            burst=2 * limits.overall_per_second,
            per_second=limits.overall_per_second,
            capacity=1,
        )

    def admit(self, address: str, now: float | None = None) -> None:
        """Rejected (429 or 503) when this address, or everyone together, posts too fast."""
        now = time.monotonic() if now is None else now
        wait = self.per_address.take(address, now)
        if wait is not None:
            raise Rejected(429, "too many feedback posts from this address", wait)
        wait = self.overall.take("all", now)
        if wait is not None:
            raise Rejected(503, "too much feedback at once", wait)

    def record(self, post: dict[str, Any], release_id: str | None, route: str) -> str:
        """Append one accepted post to the spool; returns its id."""
        feedback_id = uuid.uuid4().hex
        line = json.dumps(
            {"id": feedback_id, "ts": time.time(), "release_id": release_id, "route": route} | post,
            ensure_ascii=False,
        )
        try:
            self._rotate_if_full()
            # One write of one line with O_APPEND: an ingester never sees half a line.
            fd = os.open(self.spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as error:  # a full disk, a removed folder: refused, not a crash
            print(f"feedback not stored: {error}", file=sys.stderr)
            raise Rejected(503, "feedback cannot be stored now", 60.0) from error
        return feedback_id

    def _rotate_if_full(self) -> None:
        try:
            if self.spool.stat().st_size < self.limits.spool_bytes:
                return
        except FileNotFoundError:
            return
        os.replace(self.spool, self.spool.with_name(SPOOL_FILE + ".1"))
