"""Secret masking: replace every secret value, raw or encoded, with `***`.

Two places need it: job logs, masked line by line as they stream (`MaskingSink`), and
every string Conveyor stores or prints (`Masker.mask_text`: events, step details, reports,
smoke output). Patterns are compiled once into a single regex alternation (longest first,
so a longer encoding wins over a shorter one it contains).

A secret may be broken by line breaks: a wrapped terminal line, a test assertion message
split over two lines, base64 wrapped at 76 columns (`base64`, MIME, PEM). Whole texts are
matched with a line break allowed between any two characters; a stream of lines carries
what the previous line ended with into the next (`LineMasker`).
"""

from __future__ import annotations

import base64
import bisect
import json
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

from conveyor.engine.executors.base import LogSink, Stream

MASK = "***"

# Shorter values are ignored: masking every "a" or "42" would make logs unreadable while
# protecting nothing (a 1-2 character secret is guessable anyway).
MIN_SECRET_LENGTH = 3
# A line ending with the first characters of a secret (the rest on the next line) has
# that tail masked from this length on; shorter tails are too common to hide.
MIN_TAIL_LENGTH = 4

# A line break inside a secret: raw, JSON-escaped (`\\n`) or an XML character reference
# (`&#10;`), then the next line's indentation and gutter (pytest's `E   `, `> `, `| `).
_LINE_BREAK = re.compile(
    r"(?:\r?\n|\\r\\n|\\n|&#13;&#10;|&#10;|&#[xX]0*[aA];)[ \t]*(?:[A-Z>|#*+-][ \t]+)?"
)


class Masker:
    """Replaces secret values and their common encodings with `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(dict.fromkeys(s for s in secrets if len(s) >= MIN_SECRET_LENGTH))
        patterns = {
            pattern
            for secret in self.secrets
            for pattern in _patterns_for(secret)
            if len(pattern) >= MIN_SECRET_LENGTH
        }
        self.patterns = tuple(sorted(patterns, key=lambda p: (-len(p), p)))
        alternation = "|".join(map(re.escape, self.patterns))
        self._regex = re.compile(alternation) if self.patterns else None
        self._by_first: dict[str, list[str]] = {}
        self._by_last: dict[str, list[str]] = {}
        for pattern in self.patterns:
            if "\n" not in pattern:  # a multi-line secret is matched line by line
                self._by_first.setdefault(pattern[0], []).append(pattern)
                self._by_last.setdefault(pattern[-1], []).append(pattern)
        self._longest = max(map(len, self.patterns), default=0)
        # Every MIN_TAIL_LENGTH characters found in a secret: a quick "no" for most lines.
        self._grams = {
            pattern[i : i + MIN_TAIL_LENGTH]
            for patterns in self._by_first.values()
            for pattern in patterns
            for i in range(len(pattern) - MIN_TAIL_LENGTH + 1)
        }

    @classmethod
    def empty(cls) -> Masker:
        """A masker with nothing to hide: `mask` returns its input unchanged."""
        return _EMPTY

    def including(self, secrets: Iterable[str]) -> Masker:
        """A masker for these secrets as well as this one's."""
        more = [s for s in secrets if s not in self.secrets]
        return Masker([*self.secrets, *more]) if more else self

    @property
    def active(self) -> bool:
        return self._regex is not None

    def mask(self, text: str) -> str:
        """`text` with every secret, unbroken, masked (one log line)."""
        if self._regex is None:
            return text
        return self._regex.sub(MASK, text)

    def mask_text(self, text: str) -> str:
        """`text` with every secret masked, even one broken by line breaks; the line
        structure is kept (each line's part of a broken secret becomes `***`).

        The secrets are looked for in the text with its line breaks taken out, and each
        match is mapped back to the pieces of the text it spans."""
        if self._regex is None:
            return text
        pieces = _Pieces(text)
        spans = [span for match in self.spans(pieces.joined) for span in pieces.origin(*match)]
        # A line may hold only the start or the end of a secret (a message cut short).
        for start, end in pieces.lines():
            line = text[start:end]
            if line[-MIN_TAIL_LENGTH:] in self._grams:  # else no secret starts at its end
                for _, tail in self.tails(line):
                    if len(line) - tail >= MIN_TAIL_LENGTH:
                        spans.append((start + tail, end))
            if line[:MIN_TAIL_LENGTH] in self._grams:
                spans += [(start, start + head) for head in self._heads(line)]
        return _replace_spans(text, spans) if spans else text

    def mask_bytes(self, data: bytes) -> bytes:
        """UTF-8 text masked with `mask_text`; anything else (binary) as it is."""
        if self._regex is None:
            return data
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data
        masked = self.mask_text(text)
        return data if masked == text else masked.encode("utf-8")

    def spans(self, line: str) -> list[tuple[int, int]]:
        """Where `line` holds a whole secret (start, end)."""
        return [m.span() for m in self._regex.finditer(line)] if self._regex else []

    def _heads(self, line: str) -> Iterator[int]:
        """Each length (MIN_TAIL_LENGTH or more) of a start of `line` that ends a pattern
        without being all of it."""
        for end in range(MIN_TAIL_LENGTH, min(len(line), self._longest) + 1):
            for pattern in self._by_last.get(line[end - 1], ()):
                if end < len(pattern) and pattern.endswith(line[:end]):
                    yield end
                    break

    def tails(self, line: str) -> Iterator[tuple[str, int]]:
        """(pattern, start) for each pattern that `line[start:]` begins but does not end."""
        for start in range(max(0, len(line) - self._longest + 1), len(line)):
            for pattern in self._by_first.get(line[start], ()):
                tail = line[start:]
                if len(tail) < len(pattern) and pattern.startswith(tail):
                    yield pattern, start


class LineMasker:
    """Masks a stream of lines, including a secret broken across consecutive lines.

    What the previous line ended with (the first characters of a secret) is carried to
    the next: if that line goes on with the rest, the rest is masked. The tail itself is
    masked at once when it has MIN_TAIL_LENGTH characters or more: a line is never held
    back, so the live view stays live.
    """

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._open: list[tuple[str, int]] = []  # (pattern, characters already seen)

    def mask(self, line: str) -> str:
        if not self._masker.active:
            return line
        spans: list[tuple[int, int]] = []
        still_open: list[tuple[str, int]] = []
        for pattern, seen in self._open:
            found = _continuation(line, pattern[seen:])
            if found is not None:
                spans.append(found)
                if found[1] == len(line) and found[1] - found[0] < len(pattern) - seen:
                    still_open.append((pattern, seen + found[1] - found[0]))
        spans += self._masker.spans(line)
        for pattern, start in self._masker.tails(line):
            still_open.append((pattern, len(line) - start))
            if len(line) - start >= MIN_TAIL_LENGTH:
                spans.append((start, len(line)))
        self._open = still_open
        return _replace_spans(line, spans) if spans else line


def _continuation(line: str, rest: str) -> tuple[int, int] | None:
    """Where `line` goes on with `rest` (the end of a secret begun on the line before):
    all of it, or a part running to the line's end (a whole line inside the secret).
    After an indentation or a gutter (pytest's `E   `) only if that part is long enough
    not to be there by chance."""
    start = line.find(rest[0])
    while start != -1:
        candidate = line[start : start + len(rest)]
        whole = candidate == rest or rest.startswith(line[start:])
        if whole and (not line[:start].strip() or len(candidate) >= MIN_TAIL_LENGTH):
            return start, start + len(candidate)
        start = line.find(rest[0], start + 1)
    return None


class MaskingSink:
    """A LogSink that masks every line before handing it to the wrapped sink."""

    def __init__(self, inner: LogSink, masker: Masker) -> None:
        self._inner = inner
        self._masker = masker
        self._streams: dict[Stream, LineMasker] = {}

    def write(self, stream: Stream, line: str) -> None:
        masker = self._streams.get(stream)
        if masker is None:
            masker = self._streams[stream] = LineMasker(self._masker)
        self._inner.write(stream, masker.mask(line))


class _Pieces:
    """A text cut at its line breaks: the pieces joined, and where each piece came from."""

    def __init__(self, text: str) -> None:
        self._joined_starts: list[int] = []
        self._original_starts: list[int] = []
        parts: list[str] = []
        position = joined_length = 0
        for found in _LINE_BREAK.finditer(text):
            self._add(parts, text[position : found.start()], position, joined_length)
            joined_length += found.start() - position
            position = found.end()
        self._add(parts, text[position:], position, joined_length)
        self.joined = "".join(parts)

    def _add(self, parts: list[str], piece: str, original: int, joined: int) -> None:
        parts.append(piece)
        self._joined_starts.append(joined)
        self._original_starts.append(original)

    def lines(self) -> Iterator[tuple[int, int]]:
        """Where each piece is in the original text (start, end)."""
        ends = [*self._joined_starts[1:], len(self.joined)]
        for joined_start, joined_end, original in zip(
            self._joined_starts, ends, self._original_starts, strict=True
        ):
            yield original, original + joined_end - joined_start

    def origin(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """The spans of the original text that joined[start:end] came from."""
        index = bisect.bisect_right(self._joined_starts, start) - 1
        while index < len(self._joined_starts) and self._joined_starts[index] < end:
            piece_start = self._joined_starts[index]
            piece_end = (
                self._joined_starts[index + 1]
                if index + 1 < len(self._joined_starts)
                else len(self.joined)
            )
            low, high = max(start, piece_start), min(end, piece_end)
            if low < high:
                offset = self._original_starts[index] - piece_start
                yield low + offset, high + offset
            index += 1


def _replace_spans(line: str, spans: list[tuple[int, int]]) -> str:
    """`line` with each span (merged where they overlap) replaced by `***`."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    parts, position = [], 0
    for start, end in merged:
        parts += [line[position:start], MASK]
        position = end
    parts.append(line[position:])
    return "".join(parts)


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


_EMPTY = Masker(())
