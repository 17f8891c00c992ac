"""Small formatting filters the UI's templates share: times, durations, short shas."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from conveyor.server.ui import templates


def when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(started: float | None, finished: float | None, now: float | None = None) -> str:
    """`1.2s`, `3m04s`, `1h02m`; empty before it started; counts on while it runs."""
    if started is None:
        return ""
    seconds = max(0.0, (finished if finished is not None else now or time.time()) - started)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def short(sha: str | None, length: int = 10) -> str:
    return (sha or "")[:length]


def trigger_text(trigger: object) -> str:
    """A run's trigger mapping, one line: `push`, `rerun_of=3`."""
    if not isinstance(trigger, dict) or not trigger:
        return "manual"
    kind = trigger.get("kind") or trigger.get("event")
    rest = [f"{k}={v}" for k, v in sorted(trigger.items()) if k not in ("kind", "event")]
    return " ".join([str(kind)] * bool(kind) + rest)


def register() -> None:
    templates.env.filters["when"] = when
    templates.env.filters["short"] = short
    templates.env.filters["trigger"] = trigger_text
    templates.env.globals["duration"] = duration


register()
