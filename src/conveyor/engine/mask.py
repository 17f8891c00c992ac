"""Secret masking: replace every secret value, raw or encoded, with `***` in job logs.

Masking runs on every log line, so all patterns are compiled once into a single regex
alternation (longest first, so a longer encoding wins over a shorter one it contains).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

from conveyor.engine.executors.base import LogSink, Stream

MASK = "***"

# Shorter values are ignored: masking every "a" or "42" would make logs unreadable while
# protecting nothing (a 1-2 character secret is guessable anyway).
MIN_SECRET_LENGTH = 3


class Masker:
    """Replaces secret values and their common encodings with `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        patterns = {
            pattern
            for secret in secrets
            for pattern in _patterns_for(secret)
            if len(pattern) >= MIN_SECRET_LENGTH
        }
        ordered = sorted(patterns, key=lambda p: (-len(p), p))
        self._regex = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @classmethod
    def empty(cls) -> Masker:
        """A masker with nothing to hide: `mask` returns its input unchanged."""
        return _EMPTY

    @property
    def active(self) -> bool:
        return self._regex is not None

    def mask(self, text: str) -> str:
        if self._regex is None:
            return text
        return self._regex.sub(MASK, text)


_EMPTY = Masker(())


class MaskingSink:
    """A LogSink that masks every line before handing it to the wrapped sink."""

    def __init__(self, inner: LogSink, masker: Masker) -> None:
        self._inner = inner
        self._masker = masker

    def write(self, stream: Stream, line: str) -> None:
        self._inner.write(stream, self._masker.mask(line))


def _patterns_for(secret: str) -> Iterator[str]:
    if len(secret) < MIN_SECRET_LENGTH:
        return
    yield from _encodings_of(secret)
    # Logs arrive line by line, so a multi-line secret (a PEM key) is masked per line.
    if "\n" in secret:
        yield from secret.splitlines()


def _encodings_of(secret: str) -> Iterator[str]:
    yield secret
    yield quote(secret, safe="")
    yield quote(secret)  # keeps "/" unescaped, as most URL builders do
    yield quote_plus(secret)
    yield json.dumps(secret)[1:-1]
    yield json.dumps(secret, ensure_ascii=False)[1:-1]
    raw = secret.encode()
    yield raw.hex()
    yield raw.hex().upper()
    for encoded in _base64_forms(raw):
        yield encoded
        yield encoded.translate(_URL_SAFE)


_URL_SAFE = str.maketrans("+/", "-_")


def _base64_forms(raw: bytes) -> Iterator[str]:
    padded = base64.b64encode(raw).decode()
    yield padded
    yield padded.rstrip("=")
    for offset in range(3):
        yield _stable_base64(raw, offset)


def _stable_base64(raw: bytes, offset: int) -> str:
    """The base64 characters determined by `raw` alone when it starts `offset` bytes
    into a longer blob (`base64("user:" + secret)`).

    Each character encodes 6 bits; the ones whose bits straddle a neighbouring byte change
    with the surrounding data, so only the characters lying wholly inside the secret's
    bits are kept (the technique GitHub Actions uses).
    """
    first_bit = 8 * offset
    end_bit = first_bit + 8 * len(raw)
    first_char = -(-first_bit // 6)  # ceil
    end_char = end_bit // 6
    encoded = base64.b64encode(bytes(offset) + raw).decode()
    return encoded[first_char:end_char]
