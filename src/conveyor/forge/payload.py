"""Reading a payload's JSON: a missing or mistyped field is `Malformed`, never a KeyError."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from conveyor.forge.model import Headers, Malformed

T = TypeVar("T")
MAX_TEXT = 1024  # a name, URL or login longer than this is not one


def load_object(body: bytes) -> Mapping[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise Malformed("the body is not JSON") from None
    if not isinstance(data, dict):
        raise Malformed("the body is not a JSON object")
    return data


def pick(data: Mapping[str, Any], path: str, kind: type[T]) -> T:
    """The value at a dotted `path` (`repository.full_name`), which must be a `kind`."""
    value: Any = data
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            raise Malformed(f"{path} is missing")
        value = value[key]
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise Malformed(f"{path} is not a {kind.__name__}")
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise Malformed(f"{path} is too long")
    return value


def pick_optional(data: Mapping[str, Any], path: str, kind: type[T]) -> T | None:
    try:
        return pick(data, path, kind)
    except Malformed:
        return None


def urls(data: Mapping[str, Any], *paths: str) -> tuple[str, ...]:
    """The string values at `paths` that are present, in order."""
    return tuple(u for u in (pick_optional(data, p, str) for p in paths) if u)


def header(headers: Headers, *names: str) -> str | None:
    """The first of the named headers that was sent (names in lower case)."""
    return next((headers[n] for n in names if headers.get(n)), None)
