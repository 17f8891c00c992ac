"""Durations written as `90s`, `10m`, `1h30m`, `500ms` or a plain number of seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?(ms|s|m|h|d))+\s*$|^\s*\d+(\.\d+)?\s*$"


def parse_duration(value: object) -> float:
    """Seconds from a duration; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m or 1h30m, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise ValueError("expected a duration such as 30s, 10m or 1h30m")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


def _parse_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"invalid duration {text!r}: use forms such as 30s, 10m, 1h30m or 500ms")
    return total


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_age(seconds: float) -> str:
    """An age for people: hours and minutes up to two days, then whole days."""
    if seconds < 2 * 86400:
        return format_duration(max(seconds, 0))
    return f"{int(seconds // 86400)} days"
