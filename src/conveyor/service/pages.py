"""Keyset pagination shared by the API's lists: a page of items and an opaque cursor that
names the last item seen (never an OFFSET, so a deep page costs what the first does)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from conveyor.errors import ConveyorError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # None: this is the last page


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id the next page starts below; None for the first page."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        kind, _, number = base64.urlsafe_b64decode(padded).decode().partition(":")
        if kind == "id" and number.isdigit():
            return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ConveyorError("the cursor is not one this server gave", hint="start from the first page")


def page_of(items: list[T], limit: int, key: Callable[[T], int]) -> Page[T]:
    """`items` were read with limit + 1: the extra one only says another page exists."""
    shown = items[:limit]
    if len(items) > limit and shown:
        return Page(shown, encode_cursor(key(shown[-1])))
    return Page(shown, None)


def clamp_limit(limit: int | None) -> int:
    return DEFAULT_LIMIT if limit is None else max(1, min(limit, MAX_LIMIT))
