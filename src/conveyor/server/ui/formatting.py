"""Jinja filters the release, approval, flag and audit pages share."""

from __future__ import annotations

from datetime import UTC, datetime

from conveyor.server.ui import templates


def utc(ts: float | None) -> str:
    """Epoch seconds as `2026-12-07 02:45:10 UTC`; an em dash for none."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short_digest(digest: str | None) -> str:
    return digest[:19] if digest else "—"


def state_class(state: object) -> str:
    """A CSS class for a state word (`rolled back` -> state-rolled_back)."""
    return "state-" + str(getattr(state, "value", state)).replace(" ", "_").replace("-", "_")


def register() -> None:
    templates.env.filters["utc"] = utc
    templates.env.filters["short_digest"] = short_digest
    templates.env.filters["state_class"] = state_class


register()
